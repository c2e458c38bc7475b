"""Every setting of the platform, in one place.

Each field reads the environment variable ``HOKUSAI_<FIELD>`` (upper case); the
command line only overrides a few of them for ``hokusai serve``.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hokusai.networks import Network, parse_networks
from hokusai.role_map import RoleRule, parse_role_map

SECRET_FILE = "secret.key"
ADMIN_KEY_FILE = "admin.key"


class Settings(BaseSettings):
    """Configuration of the server side: gateway, stores and MLflow upstream."""

    model_config = SettingsConfigDict(env_prefix="HOKUSAI_", extra="ignore")

    home: Path = Field(
        default=Path(".hokusai"), description="Data directory of the embedded default."
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the auth store; default: SQLite under the data directory.",
    )
    secret_key: str | None = Field(
        default=None,
        description=(
            "Server secret for the keyed hash of API keys. Every replica must share it. "
            "Default: generated once into <home>/secret.key (embedded default only)."
        ),
    )
    mlflow_url: str = Field(default="http://127.0.0.1:5001", description="Upstream MLflow server.")

    # Gateway limits.
    max_body_bytes: int = Field(default=16 * 1024 * 1024, description="Largest API request body.")
    max_artifact_bytes: int = Field(
        default=0, description="Largest artifact upload through the gateway; 0: no limit."
    )
    rate_limit_per_second: float = Field(
        default=100.0,
        description=(
            "Sustained requests per second per key, across all replicas when they share Redis "
            "(HOKUSAI_REDIS_URL) or a PostgreSQL auth store; per replica with SQLite."
        ),
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis for the per-key rate limit shared by replicas (redis://host:6379/0).",
    )
    rate_limit_burst: int = Field(default=200, description="Requests a key may send at once.")
    auth_failures_per_minute: int = Field(
        default=30, description="Failed authentications per client address before it is slowed."
    )
    session_idle_timeout: timedelta = Field(
        default=timedelta(minutes=30),
        description="A browser session ends after this long without a request.",
    )
    session_lifetime: timedelta = Field(
        default=timedelta(hours=12),
        description="A browser session ends this long after sign-in, however busy.",
    )
    key_cache_seconds: float = Field(
        default=0.5,
        description=(
            "How long a verified key is trusted without looking at the store: the bound on how "
            "late a revocation reaches every replica."
        ),
    )
    upstream_connect_timeout: float = Field(default=1.0)
    upstream_read_timeout: float = Field(default=120.0)
    upstream_pool_size: int = Field(default=100)
    upstream_api_timeout: float = Field(
        default=30.0,
        description=(
            "Seconds MLflow may take to answer an API call (artifact transfers have "
            "upstream_read_timeout instead): a hung MLflow fails registry calls this fast."
        ),
    )
    body_idle_timeout: float = Field(
        default=10.0,
        description="Seconds a client may pause while sending a request body before a 408.",
    )
    max_in_flight_per_key: int = Field(
        default=0,
        description=(
            "Requests one key may have in flight through the MLflow proxy at once; beyond it, "
            "429. 0: half the upstream pool. Never more than the pool minus one."
        ),
    )
    mlflow_write_concurrency: int | None = Field(
        default=None,
        ge=0,
        description=(
            "MLflow writes (registry and tracking changes, not artifact transfers) one gateway "
            "process sends at once; more wait their turn in arrival order. 0: no limit. Unset: "
            "1 when `hokusai serve` runs MLflow on a SQLite store (one writer at a time), "
            "else no limit."
        ),
    )
    mlflow_write_queue_timeout: float = Field(
        default=10.0,
        gt=0,
        description=(
            "Seconds a write may wait for its turn before a 503 with Retry-After (it never "
            "reached MLflow, so retrying it is safe)."
        ),
    )
    max_header_bytes: int = Field(
        default=32 * 1024,
        description="Largest request line plus headers; beyond it, 431 and the connection closes.",
    )
    header_timeout: float = Field(
        default=10.0,
        description="Seconds a client has to send a whole request head before a 408.",
    )
    max_connections: int = Field(
        default=1000,
        description="Open client connections per gateway process; beyond it, 503 at once.",
    )
    artifact_root: str = Field(
        default="mlflow-artifacts:/",
        description=(
            "The platform's artifact root as clients name it: experiments may only be given "
            "an artifact location under it."
        ),
    )
    admin_artifact_locations: bool = Field(
        default=False,
        description=(
            "Let admin keys create experiments with an artifact location outside the "
            "platform's artifact root (other keys never may)."
        ),
    )
    trusted_proxies: str = Field(
        default="",
        description=(
            "Comma-separated IPs or CIDR networks of the reverse proxies in front of the "
            "gateway. Only a peer in this list may set X-Forwarded-For/-Proto/-Host; the "
            "client is the right-most X-Forwarded-For entry that is not a trusted proxy. "
            "Empty (default): no forwarded header is believed."
        ),
    )
    log_level: str = Field(default="INFO")

    # The resolution cache (gateway/resolution_cache.py).
    resolution_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description=(
            "Longest time the gateway serves a cached answer to a model resolution read "
            "(registered model, alias, version, latest versions, download URI). Writes "
            "through any gateway replica invalidate at once (other replicas within "
            "resolution_cache_replica_lag); this age bounds only how late a write made to "
            "MLflow directly is seen. 0 turns the cache off."
        ),
    )
    resolution_cache_max_entries: int = Field(
        default=10_000, ge=1, description="Answers the resolution cache holds per process."
    )
    resolution_cache_max_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1,
        description="Bytes of answers (bodies and headers) the resolution cache holds per process.",
    )
    resolution_cache_replica_lag: float = Field(
        default=0.5,
        gt=0,
        description=(
            "Most seconds a registry write through another replica may go unseen by this "
            "one's resolution cache. The auth store is read 2.5 times per period; a replica "
            "that could not read it within the period serves nothing from its cache."
        ),
    )

    # The artifact cache (gateway/artifact_cache.py).
    artifact_cache_max_bytes: int = Field(
        default=4 * 1024**3,
        ge=0,
        description=(
            "Disk space each gateway process may use to keep the files of READY model "
            "versions, served to every later download (ETag, Range). 0 turns the cache off."
        ),
    )
    artifact_cache_dir: Path | None = Field(
        default=None,
        description="Where the artifact cache keeps its files; default: <home>/artifact-cache.",
    )

    # Webhooks.
    webhook_allow_private: bool = Field(
        default=False,
        description="Allow webhook destinations on private, loopback or link-local addresses.",
    )
    webhook_timeout: float = Field(default=10.0, description="Seconds a receiver may take.")
    webhook_retry_scale: float = Field(
        default=1.0, description="Multiplies the retry schedule (e.g. 0.001 in tests)."
    )
    dispatcher: bool = Field(
        default=False,
        description="Run the webhook dispatcher and reconciler inside the gateway process.",
    )
    reconcile_interval: float = Field(
        default=60.0, description="Seconds between reconciler passes; 0 turns it off."
    )
    dispatch_batch: int = Field(
        default=200, ge=1, description="Deliveries a dispatcher claims in one round."
    )
    dispatch_concurrency: int = Field(
        default=64, ge=1, description="Deliveries a dispatcher sends at once."
    )
    dispatch_poll_interval: float = Field(
        default=0.1, gt=0, description="Seconds a dispatcher waits when nothing was due."
    )
    dispatch_lease_seconds: float | None = Field(
        default=None,
        gt=0,
        description="Seconds a claim is held; unset: long enough for any round (batch, "
        "concurrency and timeout decide it).",
    )
    max_dispatch_lag: float = Field(
        default=300.0,
        gt=0,
        description="Seconds the oldest due delivery may wait before /ready and "
        "`hokusai doctor --server` report the dispatcher as failing.",
    )

    # Single sign-on (OpenID Connect): off unless an issuer is set.
    oidc_issuer: str | None = Field(
        default=None,
        description=(
            "OpenID provider for single sign-on (its discovery document is "
            "<issuer>/.well-known/openid-configuration); unset: sign-in with API keys only."
        ),
    )
    oidc_client_id: str | None = Field(
        default=None, description="This gateway's client id at the OpenID provider."
    )
    oidc_client_secret: SecretStr | None = Field(
        default=None, description="This gateway's client secret at the OpenID provider."
    )
    oidc_scopes: str = Field(
        default="openid email profile",
        description="Scopes asked of the OpenID provider (space-separated; openid is required).",
    )
    oidc_role_map: str = Field(
        default="[]",
        description=(
            "JSON list of rules mapping a person's ID token claims to a workspace and role, "
            'first match wins, e.g. [{"group": "ml-admins", "workspace": "ml", "role": '
            '"admin"}, {"email": "*@example.com", "workspace": "default", "role": "read"}]. '
            "A person no rule matches is not signed in."
        ),
    )

    @field_validator("oidc_role_map")
    @classmethod
    def _valid_role_map(cls, value: str) -> str:
        try:
            parse_role_map(value)
        except ValueError as exc:
            raise ValueError(f"HOKUSAI_OIDC_ROLE_MAP: {exc}") from None
        return value

    @model_validator(mode="after")
    def _complete_sso(self) -> Settings:
        if self.oidc_issuer is None:
            return self
        missing = [
            f"HOKUSAI_{name.upper()}"
            for name in ("oidc_client_id", "oidc_client_secret")
            if not getattr(self, name)
        ]
        if missing:
            raise ValueError(f"single sign-on (HOKUSAI_OIDC_ISSUER) needs {' and '.join(missing)}")
        if not self.oidc_role_rules:
            raise ValueError(
                "single sign-on (HOKUSAI_OIDC_ISSUER) needs HOKUSAI_OIDC_ROLE_MAP: without a "
                "rule nobody could sign in"
            )
        if "openid" not in self.oidc_scopes.split():
            raise ValueError("HOKUSAI_OIDC_SCOPES must include openid")
        return self

    @cached_property
    def oidc_role_rules(self) -> tuple[RoleRule, ...]:
        return parse_role_map(self.oidc_role_map)

    @property
    def sso_enabled(self) -> bool:
        return self.oidc_issuer is not None

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_trusted_proxies(cls, value: str) -> str:
        parse_networks(value)  # a typo must stop the start, not silently trust nobody
        return value

    @cached_property
    def trusted_proxy_networks(self) -> tuple[Network, ...]:
        return parse_networks(self.trusted_proxies)

    @property
    def resolved_artifact_cache_dir(self) -> Path:
        return self.artifact_cache_dir or self.home / "artifact-cache"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'hokusai.db').resolve()}"

    @cached_property
    def resolved_secret(self) -> bytes:
        """The HMAC secret for API keys.

        An external store (``HOKUSAI_DATABASE_URL``) is shared by replicas that must agree
        on the secret, so there it has to be given; the embedded default keeps one in the
        data directory, created on first use with mode 0600.
        """
        if self.secret_key:
            return self.secret_key.encode()
        if self.database_url:
            raise RuntimeError(
                "HOKUSAI_SECRET_KEY is not set. With HOKUSAI_DATABASE_URL every gateway replica "
                "and CLI must share one server secret: set HOKUSAI_SECRET_KEY to the same long "
                "random value everywhere (e.g. `python -c 'import secrets; "
                "print(secrets.token_urlsafe(48))'`)."
            )
        return read_or_create_secret(self.home / SECRET_FILE).encode()


def read_or_create_secret(path: Path) -> str:
    """Read the secret at ``path``, creating it (mode 0600) if it does not exist yet."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    value = secrets.token_urlsafe(48)
    write_private_file(path, value + "\n", exclusive=True)
    # Another process may have won the race: whatever is on disk is the secret.
    return path.read_text().strip()


def write_private_file(path: Path, content: str, *, exclusive: bool = False) -> None:
    """Write ``content`` to a file only its owner can read (0600 from the first byte)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    os.chmod(path, 0o600)
