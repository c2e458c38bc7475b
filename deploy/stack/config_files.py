"""The configuration files of deploy/ (nginx, environment files), filled in.

They hold ``@NAME@`` placeholders; the loopback topology fills them exactly as an operator
would, so what runs in the tests is what docs/deploy.md shows."""

from __future__ import annotations

import re
from pathlib import Path

DEPLOY_DIR = Path(__file__).resolve().parent.parent
_PLACEHOLDER = re.compile(r"@([A-Z][A-Z0-9_]*)@")


def render(relative_path: str, values: dict[str, str]) -> str:
    """The file with every placeholder replaced; a placeholder without a value is an error."""
    text = (DEPLOY_DIR / relative_path).read_text()
    missing = sorted(set(_PLACEHOLDER.findall(text)) - set(values))
    if missing:
        raise KeyError(f"{relative_path}: no value for {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], text)


def environment(relative_path: str, values: dict[str, str]) -> dict[str, str]:
    """An environment file (systemd's ``EnvironmentFile=`` syntax: NAME=value lines)."""
    variables: dict[str, str] = {}
    for line in render(relative_path, values).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition("=")
        variables[name.strip()] = value.strip()
    return variables
