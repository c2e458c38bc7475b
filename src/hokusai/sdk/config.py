"""Where the SDK's key, URL and CA bundle come from: arguments > environment > profile.

The profile file is ``$HOKUSAI_CONFIG_FILE``, else ``$XDG_CONFIG_HOME/hokusai/config.json``
(``~/.config/hokusai/config.json``), written by ``hokusai login`` with mode 0600::

    {"default_profile": "default",
     "profiles": {"default": {"api_url": "https://registry.example.com", "api_key": "hk_live_…"}}}

The environment is only ever read, never changed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from hokusai.sdk.errors import ConfigurationError

DEFAULT_API_URL = "http://127.0.0.1:8080"
ENV_KEY = "HOKUSAI_API_KEY"
ENV_URL = "HOKUSAI_API_URL"
ENV_PROFILE = "HOKUSAI_PROFILE"
ENV_CA_BUNDLE = "HOKUSAI_CA_BUNDLE"
# The standard variable of OpenSSL-based clients; used when HOKUSAI_CA_BUNDLE is not set.
ENV_SSL_CERT_FILE = "SSL_CERT_FILE"


@dataclass(frozen=True)
class ClientConfig:
    api_url: str
    # Never in the repr: a config printed in a log or a traceback must not show the key.
    api_key: str = field(repr=False)
    # Where each value came from ("argument", "environment", "profile NAME", "default").
    key_source: str = "argument"
    url_source: str = "argument"
    # A PEM bundle of the CAs to trust instead of the system's (None: the system's).
    ca_bundle: str | None = None
    ca_bundle_source: str = "nowhere"

    @property
    def tracking_uri(self) -> str:
        return self.api_url + "/api/mlflow"


def config_file() -> Path:
    explicit = os.environ.get("HOKUSAI_CONFIG_FILE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "hokusai" / "config.json"


def read_profiles() -> dict[str, object]:
    path = config_file()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read the Hokusai config file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigurationError(f"the Hokusai config file {path} is not a JSON object")
    return data


def resolve(
    api_key: str | None = None,
    api_url: str | None = None,
    profile: str | None = None,
    *,
    ca_bundle: str | os.PathLike[str] | None = None,
) -> ClientConfig:
    """Pick each value from the first place that has it.

    The CA bundle: ``ca_bundle``, else ``HOKUSAI_CA_BUNDLE``, else ``SSL_CERT_FILE``, else
    none (the system's trust store).
    """
    data = read_profiles()
    profiles = data.get("profiles") or {}
    profile_name = (
        profile or os.environ.get(ENV_PROFILE) or data.get("default_profile") or "default"
    )
    chosen = profiles.get(profile_name) if isinstance(profiles, dict) else None
    if profile and not chosen:
        raise ConfigurationError(
            f"no profile {profile!r} in {config_file()}; create it with "
            f"`hokusai login --profile {profile}`"
        )
    chosen = chosen if isinstance(chosen, dict) else {}

    key, key_source = _first(
        (api_key, "argument"),
        (os.environ.get(ENV_KEY), "environment"),
        (chosen.get("api_key"), f"profile {profile_name}"),
    )
    url, url_source = _first(
        (api_url, "argument"),
        (os.environ.get(ENV_URL), "environment"),
        (chosen.get("api_url"), f"profile {profile_name}"),
        (DEFAULT_API_URL, "default"),
    )
    if not key:
        raise ConfigurationError(
            "No API key provided. Set HOKUSAI_API_KEY, pass api_key=… to ModelRegistry, or run "
            "`hokusai login`."
        )
    bundle, bundle_source = _first(
        (os.fspath(ca_bundle) if ca_bundle is not None else None, "argument"),
        (os.environ.get(ENV_CA_BUNDLE), ENV_CA_BUNDLE),
        (os.environ.get(ENV_SSL_CERT_FILE), ENV_SSL_CERT_FILE),
    )
    if bundle is not None and not Path(str(bundle)).is_file():
        raise ConfigurationError(
            f"the CA bundle {bundle} (from {bundle_source}) is not a file: it must be a PEM "
            "file of the CA certificates to trust"
        )
    return ClientConfig(
        api_url=normalise_api_url(str(url)),
        api_key=str(key).strip(),
        key_source=key_source,
        url_source=url_source,
        ca_bundle=str(bundle) if bundle is not None else None,
        ca_bundle_source=bundle_source,
    )


def normalise_api_url(url: str) -> str:
    """The gateway's base URL. A tracking URI (``…/api/mlflow``) is accepted too."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            f"HOKUSAI_API_URL must be an http(s) URL such as https://registry.example.com, "
            f"not {url!r}"
        )
    if url.endswith("/api/mlflow"):
        url = url[: -len("/api/mlflow")]
    return url


def _first(*candidates: tuple[object, str]) -> tuple[object, str]:
    for value, source in candidates:
        if value:
            return value, source
    return None, "nowhere"


def save_profile(name: str, api_url: str, api_key: str, *, make_default: bool = True) -> Path:
    """Write (or replace) a profile; the file is created with mode 0600."""
    data = read_profiles()
    profiles = data.get("profiles")
    if not isinstance(profiles, dict):
        profiles = {}
    profiles[name] = {"api_url": normalise_api_url(api_url), "api_key": api_key}
    data["profiles"] = profiles
    if make_default or "default_profile" not in data:
        data["default_profile"] = name
    path = config_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)
    return path
