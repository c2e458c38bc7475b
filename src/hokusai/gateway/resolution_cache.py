"""The resolution cache: MLflow's answers to the reads that resolve a model, kept in memory.

Deployment pipelines and serving fleets ask "which version is LSCOR@production?" far
more often than anything in the registry changes. The gateway answers those reads
(``CACHED_READS``, GET only) from here, after authentication, the route policy and the
rate limits, exactly as a proxied answer: MLflow's status, headers and body, byte for
byte. Only a 200 JSON answer whose model versions are all READY is kept; errors never.

What empties it:

- a write this gateway proxies, before its writer has the answer (``write_effect``
  says which models it touches; a write it cannot scope empties everything);
- a write through another replica, seen in the auth store within a fraction of a second
  (``gateway/registry_changes.py``): until this replica is in sync with the store it
  neither serves nor keeps anything;
- age: no answer is served older than ``max_age`` seconds, the only bound on writes
  made to MLflow directly, which no gateway sees.

A fill races with invalidations: a read that missed may bring back an answer MLflow gave
before a write that was invalidated meanwhile. Each fill therefore carries the
invalidation count from before it asked MLflow, and is dropped if that count moved.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from hokusai.gateway.observability import Metrics

V2 = "/api/2.0/mlflow"
CACHED_READS = frozenset(
    {
        f"{V2}/registered-models/get",
        f"{V2}/registered-models/alias",
        f"{V2}/registered-models/get-latest-versions",
        f"{V2}/model-versions/get",
        f"{V2}/model-versions/get-download-uri",
    }
)
# Parameters MLflow reads as a list (get-latest-versions' ``stages``); any other one given
# twice is ambiguous (MLflow takes the first) and such a read is not cached.
_LIST_PARAMETERS = frozenset({"stages"})
_REGISTRY_WRITES = (f"{V2}/registered-models/", f"{V2}/model-versions/")
# Writes that cannot change a registry answer: MLflow's registry store reads only its own
# tables (registered models, versions, their tags and aliases). Any other write empties
# the whole cache, so a route added to the policy later is safe before it is listed here.
_UNRELATED_WRITES = (
    f"{V2}/experiments/",
    f"{V2}/runs/",
    f"{V2}/logged-models",
    f"{V2}/artifacts/",
    f"{V2}/traces",
    f"{V2}/webhooks",
    "/api/2.0mlflow/experiments/",
    "/api/2.0/mlflow-artifacts/",
    "/api/2.0/mlflow/upload-artifact",
    "/api/3.0/mlflow/traces",
    "/api/3.0/mlflow/datasets/",
    "/api/3.0/mlflow/label-schemas/",
    "/api/3.0/mlflow/review-queues/",
    "/api/3.0/mlflow/issues",
    "/api/3.0/mlflow/scorers/",
    "/api/3.0/mlflow/prompt-optimization/",
    "/api/3.0/mlflow/mcp-servers",
    "/api/3.0/mlflow/gateway/",
    "/v1/traces",
)


def api_path(mlflow_path: str) -> str:
    """The path of MLflow's handler: the browser's ``/ajax-api/`` twin is the same one."""
    if mlflow_path.startswith("/ajax-api/"):
        return "/api/" + mlflow_path[len("/ajax-api/") :]
    return mlflow_path


def model_index(workspace: str, name: str) -> str:
    """The form a model is indexed under for invalidation: ``workspace/name``.

    Two workspaces may both have "LSCOR"; a workspace name has no ``/``, so the first one
    separates them. Some MLflow stores compare names without regard to case or trailing
    spaces (MySQL's default collation): folding here makes a write to "LSCOR" also drop
    a read of "lscor ", which costs a refetch at worst.
    """
    return f"{workspace}/{name.casefold().rstrip(' ')}"


@dataclass(frozen=True)
class ReadKey:
    """What identifies one cached answer: the workspace (MLflow answers per workspace),
    the handler's path and the sorted query. :func:`cacheable_read` builds every key."""

    workspace: str
    path: str
    query: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class CacheableRead:
    key: ReadKey
    model: str  # as indexed by model_index


def cacheable_read(
    method: str, mlflow_path: str, query_string: bytes, workspace: str
) -> CacheableRead | None:
    """The cache key of a read this cache answers in ``workspace`` (the one the gateway
    sends MLflow), or None for any other request."""
    if method != "GET":
        return None
    path = api_path(mlflow_path)
    if path not in CACHED_READS:
        return None
    if not query_string.isascii():
        # MLflow decodes raw bytes as UTF-8 and this parser would not: the model name
        # could differ from MLflow's, and so would its invalidation.
        return None
    try:
        pairs = parse_qsl(query_string.decode("ascii"), keep_blank_values=True, errors="strict")
    except ValueError:  # UnicodeDecodeError included
        return None
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen and name not in _LIST_PARAMETERS:
            return None
        seen.add(name)
    names = [value for name, value in pairs if name == "name"]
    if len(names) != 1 or not names[0]:
        return None
    # Sorted by parameter name only: a list parameter keeps its values' order.
    query = tuple(sorted(pairs, key=lambda pair: pair[0]))
    return CacheableRead(ReadKey(workspace, path, query), model_index(workspace, names[0]))


@dataclass(frozen=True)
class WriteEffect:
    """Which cached answers a write may change: those of ``models``, or everything."""

    models: frozenset[str] = frozenset()
    everything: bool = False

    @property
    def none(self) -> bool:
        return not self.everything and not self.models


EVERYTHING = WriteEffect(everything=True)
NOTHING = WriteEffect()


def write_effect(mlflow_path: str, body: bytes, query_string: bytes, workspace: str) -> WriteEffect:
    """The answers a write (any method but a read) in ``workspace`` may change.

    A registry write names its model in ``name`` (rename: also ``new_name``), in the JSON
    body or the query: those models. A registry write whose model cannot be told, and any
    write not known to leave the registry alone, may change anything.
    """
    path = api_path(mlflow_path)
    if path.startswith(_REGISTRY_WRITES):
        names = _written_models(body, query_string)
        if not names:
            return EVERYTHING
        return WriteEffect(frozenset(model_index(workspace, name) for name in names))
    if path.startswith(_UNRELATED_WRITES):
        return NOTHING
    return EVERYTHING


def _written_models(body: bytes, query_string: bytes) -> frozenset[str]:
    """Every model a registry write names, from its JSON body and its query alike (which
    one MLflow reads depends on the method); empty when there is none to be sure of."""
    sources: list[dict[str, object]] = []
    if body:
        try:
            parsed = json.loads(body)
        except ValueError:
            return frozenset()
        if not isinstance(parsed, dict):
            return frozenset()
        sources.append(parsed)
    if not query_string.isascii():
        return frozenset()
    try:
        query = parse_qsl(query_string.decode("ascii"), keep_blank_values=True, errors="strict")
    except ValueError:  # UnicodeDecodeError included: not the name MLflow would read
        return frozenset()
    sources += [{name: value} for name, value in query]
    if not any(isinstance(s.get("name"), str) and s.get("name") for s in sources):
        return frozenset()
    return frozenset(
        value
        for s in sources
        for field_name in ("name", "new_name")
        if isinstance(value := s.get(field_name), str) and value
    )


def all_versions_ready(body: bytes) -> bool:
    """True when the answer is a JSON object and every model version in it is READY.

    A version is PENDING_REGISTRATION until MLflow finalises it, in some stores after the
    create call has answered and without any write through the gateway: an answer that
    shows one is never kept. ``registered-models/get`` shows versions in
    ``latest_versions``, ``get-latest-versions`` in ``model_versions``.
    """
    try:
        answer = json.loads(body)
    except ValueError:
        return False
    if not isinstance(answer, dict):
        return False
    versions: list[object] = []
    if "model_version" in answer:
        versions.append(answer["model_version"])
    versions += answer.get("model_versions") or []
    model = answer.get("registered_model")
    if isinstance(model, dict):
        versions += model.get("latest_versions") or []
    return all(isinstance(v, dict) and v.get("status") == "READY" for v in versions)


@dataclass
class CachedAnswer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    model: str
    stored_at: float
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = len(self.body) + sum(len(k) + len(v) for k, v in self.headers)


class ResolutionCache:
    """An LRU of answers, bounded by entry count and by bytes (bodies plus headers)."""

    def __init__(
        self,
        *,
        max_age: float,
        max_entries: int,
        max_bytes: int,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_age = max_age
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._metrics = metrics
        self._clock = clock
        self._entries: OrderedDict[ReadKey, CachedAnswer] = OrderedDict()
        self._by_model: dict[str, set[ReadKey]] = {}
        self._bytes = 0
        # Moves on every invalidation: a fill that saw another value is dropped.
        self._invalidations = 0
        # Set by the follower of the store's registry changes: nothing is served or kept
        # after this moment until it has heard from the store again.
        self._in_sync_until = float("-inf")

    # ---- reading and filling ---------------------------------------------------------

    @property
    def in_sync(self) -> bool:
        return self._clock() < self._in_sync_until

    def get(self, key: ReadKey) -> CachedAnswer | None:
        """The answer to serve for ``key``, or None (a miss, counted)."""
        entry = self._entries.get(key) if self.in_sync else None
        if entry is not None and self._clock() - entry.stored_at >= self.max_age:
            self._remove(key)
            entry = None
        if entry is None:
            if self._metrics:
                self._metrics.resolution_cache_misses.inc()
            return None
        self._entries.move_to_end(key)
        if self._metrics:
            self._metrics.resolution_cache_hits.inc()
        return entry

    def ticket(self) -> int:
        """Taken before asking MLflow; :meth:`put` keeps the answer only if still valid."""
        return self._invalidations

    def put(
        self,
        read: CacheableRead,
        ticket: int,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> bool:
        """Keep MLflow's answer to ``read`` if it may be served again; True when kept."""
        if ticket != self._invalidations or not self.in_sync:
            return False
        if status != 200 or not _plain_json(headers) or not all_versions_ready(body):
            return False
        # A request id is the answer's own: the gateway adds the next request's.
        kept = [(name, value) for name, value in headers if name != b"x-request-id"]
        entry = CachedAnswer(status, kept, body, read.model, self._clock())
        if entry.size > self.max_bytes:
            return False
        self._remove(read.key)
        self._entries[read.key] = entry
        self._by_model.setdefault(read.model, set()).add(read.key)
        self._bytes += entry.size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            self._remove(next(iter(self._entries)))
        self._observe_size()
        return True

    # ---- invalidation ----------------------------------------------------------------

    def invalidate(self, effect: WriteEffect) -> None:
        if effect.everything:
            self.invalidate_all()
        elif effect.models:
            self.invalidate_models(effect.models)

    def invalidate_models(self, models: Iterable[str]) -> None:
        """Drop the answers about these models (names as indexed by model_index)."""
        self._invalidations += 1
        for model in models:
            for key in self._by_model.pop(model, set()):
                self._remove(key)
        if self._metrics:
            self._metrics.resolution_cache_invalidations.labels("model").inc()
        self._observe_size()

    def invalidate_all(self) -> None:
        self._invalidations += 1
        self._entries.clear()
        self._by_model.clear()
        self._bytes = 0
        if self._metrics:
            self._metrics.resolution_cache_invalidations.labels("all").inc()
        self._observe_size()

    def in_sync_until(self, deadline: float) -> None:
        """Serve and keep answers until ``deadline`` (the follower moves it on)."""
        self._in_sync_until = deadline

    def out_of_sync(self) -> None:
        """The store cannot tell what changed: serve nothing and forget everything."""
        self._in_sync_until = float("-inf")
        self.invalidate_all()

    # ---- bookkeeping ------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def _remove(self, key: ReadKey) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self._bytes -= entry.size
        keys = self._by_model.get(entry.model)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_model[entry.model]

    def _observe_size(self) -> None:
        if self._metrics:
            self._metrics.resolution_cache_entries.set(len(self._entries))
            self._metrics.resolution_cache_bytes.set(self._bytes)


def _plain_json(headers: list[tuple[bytes, bytes]]) -> bool:
    """JSON, not compressed (the gateway asks MLflow for plain answers to cached reads)."""
    content_type = b""
    for name, value in headers:
        if name == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
            return False
        if name == b"content-type":
            content_type = value.lower()
    return content_type.startswith(b"application/json")
