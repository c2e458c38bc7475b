"""Benchmark of webhook delivery: registry events in the outbox to signed deliveries at a
receiver, with the dispatcher as it runs in production.

What one run measures, on loopback only (127.0.0.1), for each store (SQLite; PostgreSQL too
with ``--postgres`` or when HOKUSAI_TEST_POSTGRES_URL names a server):

- three processes: a **receiver** (this script started again with ``--receiver``: a bare
  ASGI app under uvicorn that records each webhook-id with the time it arrived and answers
  204), a **producer** (``--produce``: writes events with ``hokusai.webhooks.outbox.emit``,
  one transaction per event, as the gateway does after a registry write) and this process,
  which runs ``hokusai.webhooks.dispatcher.Dispatcher`` with its default settings (batch,
  concurrency, poll interval, timeout, lease) except ``allow_private`` for the loopback
  receiver, on an event loop of its own, like ``hokusai worker``;
- **steady**: events offered at ``--rate`` per second for ``--seconds`` seconds, spread over
  ``--models`` models; event-to-delivery latency (from the event's creation in the producer
  to its arrival at the receiver: p50, p99, max) and the delivery rate sustained;
- **backlog**: ``--backlog`` events written while no dispatcher runs, then one started:
  deliveries per second until the last one arrives (the dispatcher's capacity);
- **one model**: the same with every event for one model, whose events go to an endpoint one
  after the other (in the order they happened), not concurrently.

Every delivery is checked to arrive exactly once. Each phase is bounded in events and time.
Where the dispatcher's time goes is measured on the way (claim and record transactions,
sending), with the CPU time of each process and the share of the machine other processes
took.

The targets: at least 500 deliveries/s, and a p99 latency of at most 1 s at 500 events/s
offered. It prints tables with PASS or MISS and writes bench/results/webhooks.json.
Usage: ``.venv/bin/python bench/bench_webhooks.py [--postgres [URL]]``.

Longer than most modules (about 610 lines) because a run is one script: the receiver,
the offered load, the measurements of both targets and their report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from _common import (
    BENCH_DIR,
    CpuAccount,
    CpuSpent,
    load_average,
    percentile,
    record_start,
)
from _servers import Server, free_port, postgres_database, spawn, stop_process_group

if TYPE_CHECKING:  # the receiver and producer processes need none of the dispatcher
    from hokusai.webhooks.dispatcher import RoundObserver, RoundTimings

RESULTS_FILE = BENCH_DIR / "results" / "webhooks.json"
POSTGRES_ENV = "HOKUSAI_TEST_POSTGRES_URL"

GOAL_DELIVERIES_PER_SECOND = 500.0
GOAL_P99_SECONDS = 1.0
PHASE_SECONDS = 120.0  # no phase runs longer, whatever happens


# ---- the receiver (its own process) ---------------------------------------------------------


def receiver_main(port: int) -> None:
    import uvicorn

    records: list[tuple[str, float]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/records":
            since = int(scope["query_string"].decode().partition("=")[2] or 0)
            body = json.dumps(records[since:]).encode()
            status = 200
        elif path == "/count":
            body, status = str(len(records)).encode(), 200
        else:
            more = True
            while more:
                message = await receive()
                more = message.get("more_body", False)
            arrived = time.time()
            webhook_id = dict(scope["headers"]).get(b"webhook-id", b"").decode()
            records.append((webhook_id, arrived))
            body, status = b"", 204
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )


@dataclass
class Receiver:
    server: Server
    # One client for every look at the receiver: a new one per call would build a TLS
    # context each time, tens of milliseconds of CPU taken from the dispatcher.
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    @property
    def url(self) -> str:
        return self.server.url

    def count(self) -> int:
        return int(self.client.get(self.url + "/count").text)

    def records(self, since: int) -> list[tuple[str, float]]:
        answer = self.client.get(self.url + "/records", params={"since": since})
        return [(webhook_id, arrived) for webhook_id, arrived in answer.json()]

    def wait_for(self, total: int, deadline: float) -> int:
        while (count := self.count()) < total and time.monotonic() < deadline:
            time.sleep(0.1)
        return count


@contextlib.contextmanager
def running_receiver(scratch: Path) -> Iterator[Receiver]:
    port = free_port()
    command = [sys.executable, __file__, "--receiver", str(port)]
    server = spawn(
        "receiver", command, dict(os.environ), scratch / "receiver.log", f"http://127.0.0.1:{port}"
    )
    receiver = Receiver(server)
    try:
        server.wait_ready("/count", seconds=30)
        yield receiver
    finally:
        receiver.client.close()
        server.stop()


# ---- the producer (its own process) ---------------------------------------------------------


def produce_main(url: str, rate: float, count: int, models: int, prefix: str) -> None:
    """Emit ``count`` events, ``rate`` per second (0: as fast as possible), one transaction
    each; print what it took as JSON."""
    from hokusai.db.engine import make_engine
    from hokusai.webhooks.events import MODEL_VERSION_TAG_SET, Event
    from hokusai.webhooks.outbox import emit

    engine = make_engine(url)
    started = time.monotonic()
    for i in range(count):
        if rate:
            pause = started + i / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        name = f"{prefix}-{i % models}"
        data = {"name": name, "version": "1", "key": "step", "value": str(i)}
        emit(engine, [Event(MODEL_VERSION_TAG_SET, data, key_id="key_bench")])
    took = time.monotonic() - started
    engine.dispose()
    print(json.dumps({"count": count, "seconds": took, "per_second": count / took}))


def produce(url: str, *, rate: float, count: int, models: int, prefix: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--produce", url, "--rate", str(rate)]
    command += ["--count", str(count), "--models", str(models), "--prefix", prefix]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, start_new_session=True)
    try:
        out, _ = process.communicate(timeout=PHASE_SECONDS)
    finally:
        stop_process_group(process)
    if process.returncode != 0:
        raise RuntimeError(f"the producer failed ({process.returncode})")
    answer: dict[str, Any] = json.loads(out)
    return answer


# ---- the dispatcher (this process), with where its time goes ----------------------------------


@dataclass
class Timing:
    """Where the dispatcher's time went over a phase, summed from the timings of its rounds
    (the dispatcher's round observer)."""

    rounds: int = 0
    claimed: int = 0
    claim_seconds: float = 0.0  # empty rounds (polls that found nothing due) included
    record_seconds: float = 0.0
    release_seconds: float = 0.0
    send_seconds: float = 0.0  # summed over concurrent attempts
    sends: int = 0
    round_seconds: float = 0.0

    def __call__(self, timings: RoundTimings) -> None:
        self.claim_seconds += timings.claim
        if not timings.attempted:
            return
        self.rounds += 1
        self.claimed += timings.attempted
        self.record_seconds += timings.record
        self.release_seconds += timings.release
        self.send_seconds += timings.attempts
        self.sends += timings.attempted
        self.round_seconds += timings.whole_round

    def summary(self) -> dict[str, Any]:
        rounds = self.rounds or 1
        sends = self.sends or 1
        return {
            "rounds": self.rounds,
            "claimed_per_round": round(self.claimed / rounds, 1),
            "round_ms": round(1000 * self.round_seconds / rounds, 2),
            "claim_ms_per_round": round(1000 * self.claim_seconds / rounds, 2),
            "record_ms_per_round": round(1000 * self.record_seconds / rounds, 2),
            "release_ms_per_round": round(1000 * self.release_seconds / rounds, 2),
            "send_ms_per_delivery": round(1000 * self.send_seconds / sends, 2),
        }


def signing_ms(samples: int = 2000) -> float:
    """What signing one delivery costs, in milliseconds: ``signature_header`` on a body the
    size of the benchmark's events (timed apart from the phases: the dispatcher reports
    its rounds, not its signatures)."""
    from hokusai.webhooks.signing import new_secret, signature_header

    body = json.dumps({"type": "model_version.tag_set", "data": {"name": "m-0", "value": "1"}})
    secret, now = [new_secret()], datetime.now(UTC)
    started = time.perf_counter()
    for i in range(samples):
        signature_header(f"evt_{i}", now, body, secret)
    return round(1000 * (time.perf_counter() - started) / samples, 4)


class DispatcherThread:
    """``Dispatcher.run`` on an event loop of its own, started and stopped from here; each
    start with the observer its rounds are reported to."""

    def __init__(self, url: str, box: Any, **settings: Any) -> None:
        self.url, self.box, self.settings = url, box, settings
        self.observer: RoundObserver | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failure: BaseException | None = None

    def start(self, observer: RoundObserver) -> None:
        self.observer = observer
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import anyio

        from hokusai.db.engine import make_engine
        from hokusai.webhooks.dispatcher import Dispatcher, DispatcherSettings

        engine = make_engine(self.url)
        settings = DispatcherSettings(**{"allow_private": True, **self.settings})
        dispatcher = Dispatcher(engine, self.box, settings, observer=self.observer)

        async def main() -> None:
            stopped = anyio.Event()
            async with anyio.create_task_group() as group:
                group.start_soon(dispatcher.run, stopped)
                while not self._stop.is_set():
                    await anyio.sleep(0.02)
                stopped.set()

        try:
            anyio.run(main)
        except BaseException as exc:
            self.failure = exc
        finally:
            engine.dispose()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            if self._thread.is_alive():
                raise RuntimeError("the dispatcher did not stop")
        if self.failure is not None:
            raise RuntimeError("the dispatcher failed") from self.failure


# ---- one store --------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    events: int
    delivered: int = 0
    duplicates: int = 0
    seconds: float = 0.0
    per_second: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    producer: dict[str, Any] = field(default_factory=dict)
    dispatcher: dict[str, Any] = field(default_factory=dict)
    cpu: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "name"}


def occurred_at(url: str, prefix: str) -> dict[str, float]:
    from sqlalchemy import select

    from hokusai.db.engine import make_engine
    from hokusai.db.schema import events

    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(events.c.id, events.c.occurred_at).where(events.c.model_name.like(prefix + "-%"))
        ).all()
    engine.dispose()
    return {
        row.id: (
            row.occurred_at if row.occurred_at.tzinfo else row.occurred_at.replace(tzinfo=UTC)
        ).timestamp()
        for row in rows
    }


def measure(
    phase: Phase,
    receiver: Receiver,
    url: str,
    prefix: str,
    base: int,
    started: float | None,
    timing: Timing,
    cpu: CpuAccount,
) -> Phase:
    """Wait for every delivery of the phase; fill in what it took."""
    count = receiver.wait_for(base + phase.events, time.monotonic() + PHASE_SECONDS)
    time.sleep(0.3)  # room for a delivery made twice to show
    spent = cpu.stop()
    records = receiver.records(base)
    created = occurred_at(url, prefix)
    per_id = Counter(webhook_id for webhook_id, _ in records)
    phase.delivered = len(set(per_id) & set(created))
    phase.duplicates = sum(n - 1 for n in per_id.values() if n > 1)
    first_arrival: dict[str, float] = {}
    for webhook_id, arrived in records:
        first_arrival.setdefault(webhook_id, arrived)
    latencies = [first_arrival[i] - created[i] for i in first_arrival if i in created]
    last = max(first_arrival.values()) if first_arrival else started
    steady = started is None
    if steady:  # from the first event written (a backlog's events wait on purpose)
        started = min(created.values())
    phase.seconds = round(last - started, 3)
    phase.per_second = round(phase.delivered / max(last - started, 1e-9), 1)
    if latencies and steady:
        phase.latency_ms = {
            "p50": round(1000 * percentile(latencies, 50), 1),
            "p99": round(1000 * percentile(latencies, 99), 1),
            "max": round(1000 * max(latencies), 1),
            "mean": round(1000 * statistics.fmean(latencies), 1),
        }
    phase.dispatcher = timing.summary()
    phase.cpu = phase_cpu(spent)
    if count < base + phase.events:
        print(f"  {phase.name}: only {count - base} of {phase.events} within the time bound")
    return phase


def bench_store(label: str, url: str, receiver: Receiver, args: argparse.Namespace) -> list[Phase]:
    from hokusai.admin.actor import Actor, Origin
    from hokusai.admin.webhooks import WebhookAdmin
    from hokusai.db.engine import make_engine
    from hokusai.db.migrate import upgrade
    from hokusai.webhooks.dispatcher import DispatcherSettings
    from hokusai.webhooks.signing import SecretBox

    engine = make_engine(url)
    upgrade(engine)
    box = SecretBox(secrets.token_bytes(32))
    WebhookAdmin(engine, box, DispatcherSettings(allow_private=True)).add(
        Actor.operator(Origin.command("bench")), receiver.url + "/hook"
    )
    engine.dispose()
    dispatcher = DispatcherThread(url, box)
    phases = []

    # Steady: events offered at a fixed rate while the dispatcher runs.
    steady = Phase("steady", int(args.rate * args.seconds))
    prefix, base, timing = f"steady-{label}", receiver.count(), Timing()
    dispatcher.start(timing)
    cpu = CpuAccount([receiver.server.pid]).start()
    print(f"  steady: {steady.events} events at {args.rate:g}/s …", flush=True)
    steady.producer = produce(
        url, rate=args.rate, count=steady.events, models=args.models, prefix=prefix
    )
    phases.append(measure(steady, receiver, url, prefix, base, None, timing, cpu))
    dispatcher.stop()

    # Backlog: written first, then delivered by a dispatcher started afterwards.
    for name, models in (("backlog", args.models), ("one model", 1)):
        events = args.backlog if models > 1 else args.backlog_one_model
        phase = Phase(name, events)
        prefix, base, timing = f"{name.replace(' ', '-')}-{label}", receiver.count(), Timing()
        print(f"  {name}: {events} events written, then delivered …", flush=True)
        phase.producer = produce(url, rate=0, count=events, models=models, prefix=prefix)
        cpu = CpuAccount([receiver.server.pid]).start()
        started = time.time()
        dispatcher.start(timing)
        phases.append(measure(phase, receiver, url, prefix, base, started, timing, cpu))
        dispatcher.stop()
    return phases


# ---- the stores and the machine's CPU ----------------------------------------------------------


@contextlib.contextmanager
def sqlite_store(root: Path) -> Iterator[str]:
    root.mkdir(parents=True, exist_ok=True)
    yield f"sqlite:///{root / 'hokusai.db'}"


def phase_cpu(spent: CpuSpent) -> dict[str, Any]:
    """The machine's CPU over a phase: this process (the dispatcher), the receiver, the
    producer (a waited-for child), and everything else on the machine (steal included)."""
    span = spent.total or 1.0
    busy = spent.busy + spent.steal
    return {
        "wall_seconds": round(span / (os.cpu_count() or 1), 2),
        "dispatcher_cpu_seconds": round(spent.own, 2),
        "receiver_cpu_seconds": round(spent.watched, 2),
        "producer_cpu_seconds": round(spent.children, 2),
        "machine_busy_percent": round(100 * busy / span, 1),
        "other_processes_percent": round(100 * max(0.0, busy - spent.benchmark) / span, 1),
    }


# ---- report -----------------------------------------------------------------------------------


def targets(stores: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    checks = []
    for store, phases in stores.items():
        by_name = {p["phase"]: p for p in phases}
        backlog, steady = by_name["backlog"], by_name["steady"]
        complete = backlog["delivered"] == backlog["events"] and backlog["duplicates"] == 0
        checks.append(
            {
                "target": f"{store}: deliveries/s, backlog of {backlog['events']}",
                "value": backlog["per_second"] if complete else 0.0,
                "relation": ">=",
                "goal": GOAL_DELIVERIES_PER_SECOND,
            }
        )
        complete = steady["delivered"] == steady["events"] and steady["duplicates"] == 0
        p99 = steady["latency_ms"].get("p99", float("inf")) / 1000 if complete else float("inf")
        checks.append(
            {
                "target": f"{store}: p99 event-to-delivery latency, {steady['offered']:g} events/s "
                f"asked ({steady['producer']['per_second']:.0f}/s written), s",
                "value": p99,
                "relation": "<=",
                "goal": GOAL_P99_SECONDS,
            }
        )
    for check in checks:
        value, goal = check["value"], check["goal"]
        check["met"] = value >= goal if check["relation"] == ">=" else value <= goal
    return checks


def table(record: dict[str, Any]) -> str:
    lines = [
        "| store | phase | events | written/s | delivered | twice | deliveries/s | p50 ms "
        "| p99 ms | max ms | per round: claimed, claim ms, record ms | send ms "
        "| dispatcher CPU s | other load |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: "
        "| ---: |",
    ]
    for store, phases in record["stores"].items():
        for p in phases:
            lat, d, c = p["latency_ms"], p["dispatcher"], p["cpu"]
            lines.append(
                f"| {store} | {p['phase']} | {p['events']} | "
                f"{p['producer']['per_second']:.0f} | {p['delivered']} | "
                f"{p['duplicates']} | {p['per_second']:.0f} | {lat.get('p50', '')} | "
                f"{lat.get('p99', '')} | {lat.get('max', '')} | {d['claimed_per_round']}, "
                f"{d['claim_ms_per_round']}, {d['record_ms_per_round']} | "
                f"{d['send_ms_per_delivery']} | {c['dispatcher_cpu_seconds']} | "
                f"{c['other_processes_percent']}% |"
            )
    return "\n".join(lines)


def print_report(record: dict[str, Any]) -> None:
    m = record["machine"]
    print(
        f"\n{m['cpu_model']}, {m['cores']} cores, {m['memory_gib']} GiB; Python {m['python']}; "
        f"{record['date']}; load average before {record['load_average_before']}\n"
    )
    print(table(record))
    print()
    for c in record["targets"]:
        print(
            f"{'PASS' if c['met'] else 'MISS'}  {c['target']}: {c['value']:.3f} "
            f"(goal {c['relation']} {c['goal']:g})"
        )


# ---- main -------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=500.0, help="events/s offered, steady")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the steady phase")
    parser.add_argument("--models", type=int, default=100, help="models the events spread over")
    parser.add_argument("--backlog", type=int, default=5000)
    parser.add_argument("--backlog-one-model", type=int, default=1000)
    parser.add_argument("--postgres", metavar="URL", nargs="?", const="", default=None)
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="do not write the results")
    parser.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--produce", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.receiver:
        receiver_main(args.receiver)
        return
    if args.produce:
        produce_main(args.produce, args.rate, args.count, args.models, args.prefix)
        return
    postgres = args.postgres if args.postgres else os.environ.get(POSTGRES_ENV)
    if args.postgres == "" and not postgres:
        raise SystemExit(f"--postgres needs a URL, or {POSTGRES_ENV}")
    record: dict[str, Any] = {
        **record_start(),
        "signing_ms_per_delivery": signing_ms(),
        "settings": {
            "rate": args.rate,
            "seconds": args.seconds,
            "models": args.models,
            "backlog": args.backlog,
            "backlog_one_model": args.backlog_one_model,
            "dispatcher": "DispatcherSettings(allow_private=True), every other default",
        },
        "stores": {},
    }
    with tempfile.TemporaryDirectory(prefix="hokusai-bench-webhooks-") as tmp:
        stores: list[tuple[str, Any]] = []
        if not args.no_sqlite:
            stores.append(("sqlite", sqlite_store(Path(tmp))))
        if postgres:
            stores.append(("postgresql", postgres_database(postgres)))
        with running_receiver(Path(tmp)) as receiver:
            for label, store in stores:
                print(f"{label}:", flush=True)
                with store as url:
                    phases = bench_store(label, url, receiver, args)
                record["stores"][label] = [
                    {
                        "phase": p.name,
                        **p.record(),
                        "offered": args.rate if p.name == "steady" else None,
                    }
                    for p in phases
                ]
    record["load_average_after"] = load_average()
    record["targets"] = targets(record["stores"])
    print_report(record)
    if not args.no_write:
        RESULTS_FILE.parent.mkdir(exist_ok=True)
        partial = RESULTS_FILE.with_suffix(".json.tmp")
        partial.write_text(json.dumps(record, indent=2) + "\n")
        partial.replace(RESULTS_FILE)
        print(f"\nwritten: {RESULTS_FILE.relative_to(BENCH_DIR.parent)}")


if __name__ == "__main__":
    main()
