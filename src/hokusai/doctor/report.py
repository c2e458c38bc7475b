"""A doctor's findings: one result per hop, shown as lines or as JSON."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console
from rich.text import Text


class HopFailed(Exception):
    """A hop failed: ``detail`` is what was seen, ``fix`` what to do."""

    def __init__(self, detail: str, fix: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fix = fix


@dataclass
class Hop:
    name: str
    ok: bool
    ms: float
    detail: str
    fix: str | None = None


@dataclass
class Report:
    hops: list[Hop] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(h.ok for h in self.hops)

    @property
    def failed_hop(self) -> str | None:
        return next((h.name for h in self.hops if not h.ok), None)

    def run(self, name: str, check: Callable[[], str]) -> bool:
        """Run one hop; record it; False when it failed (the walk stops there)."""
        started = time.perf_counter()
        try:
            detail = check()
            hop = Hop(name, True, _ms(started), detail)
        except HopFailed as failure:
            hop = Hop(name, False, _ms(started), failure.detail, failure.fix)
        except Exception as exc:  # a doctor never ends in a traceback: it is a finding too
            hop = Hop(
                name,
                False,
                _ms(started),
                f"the check stopped on {type(exc).__name__}: {str(exc)[:300]}",
                "Run the check again; if it persists, report it with this output.",
            )
        self.hops.append(hop)
        return hop.ok

    def as_json(self) -> str:
        body: dict[str, Any] = {
            "ok": self.ok,
            "failed_hop": self.failed_hop,
            "hops": [asdict(h) for h in self.hops],
        }
        return json.dumps(body, indent=2)

    def print(self, console: Console) -> None:
        width = max((len(h.name) for h in self.hops), default=0)
        for hop in self.hops:
            line = Text()
            line.append("✓ " if hop.ok else "✗ ", style="green" if hop.ok else "bold red")
            line.append(hop.name.ljust(width), style="bold")
            line.append(f"  {hop.ms:7.1f} ms  ", style="dim")
            line.append(hop.detail)
            console.print(line, soft_wrap=True)
            if hop.fix:
                fix = Text("  " + " " * width + "   fix: ", style="yellow")
                fix.append(hop.fix)
                console.print(fix, soft_wrap=True)
        summary = "all hops passed" if self.ok else f"failed at '{self.failed_hop}'"
        console.print(Text(summary, style="green" if self.ok else "bold red"))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
