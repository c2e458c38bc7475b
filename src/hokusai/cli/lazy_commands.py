"""Commands imported only when they run, and the answer when their packages are missing.

The base install (``pip install hokusai-ml-platform``) is the SDK and the client side of
the CLI; the gateway, the stores and webhooks come with the ``server`` extra. A command's
module is imported the first time the command is looked up (to run it, or to list it in
``--help``), so a client command never pays for, or depends on, the server's packages.
When a command's module needs one that is not installed, the command is replaced by one
that says what to install and exits non-zero — decided here, once, for every command,
and for the server-side paths of the commands that run without the extra
(:func:`server_extra`).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn

import typer
import typer.main
from typer import _click as click  # typer (>= 0.29) vendors click: its classes are these
from typer.core import TyperGroup

SERVER_INSTALL = "pip install 'hokusai-ml-platform[server]'"
EXIT_NEEDS_SERVER_EXTRA = 1

# The top-level import names of the packages only the ``server`` extra installs (and
# of full MLflow's server side). A module that fails to import one of these needs the
# extra; any other import failure is a defect and is raised as it is.
SERVER_PACKAGES = frozenset(
    {
        "aiohttp",
        "alembic",
        "cryptography",
        "fastapi",
        "fastapi_offline",
        "flask",
        "gunicorn",
        "prometheus_client",
        "psycopg",
        "pydantic_settings",
        "redis",
        "sqlalchemy",
        "standardwebhooks",
        "starlette",
        "uvicorn",
        "yarl",
    }
)


@dataclass(frozen=True)
class LazyCommand:
    """``hokusai <name>`` is ``<module>.<attribute>``: a command function, or a
    ``typer.Typer`` of subcommands."""

    name: str
    module: str
    attribute: str


def missing_server_package(exc: ModuleNotFoundError) -> str | None:
    """The server package whose absence ``exc`` reports, or None for any other module."""
    missing = exc.name or ""
    top = missing.split(".")[0]
    if top in SERVER_PACKAGES or missing.startswith("mlflow.server"):
        return missing
    return None


def explain_server_extra(what: str, missing: str, hint: str = "") -> NoReturn:
    """Say that ``what`` needs the server extra (``missing`` is not installed) and exit 1:
    the one answer for a command, or a command's server-side path, without the extra."""
    lines = [
        f"{what} needs the server extra: {SERVER_INSTALL}",
        f"(the Python package {missing!r} is not installed)",
    ]
    print("\n".join([*lines, hint] if hint else lines), file=sys.stderr)
    sys.exit(EXIT_NEEDS_SERVER_EXTRA)


@contextmanager
def server_extra(what: str, hint: str = "") -> Iterator[None]:
    """Run the block, which imports the server's code; when that fails for want of a
    server package, :func:`explain_server_extra` instead of a traceback. For a command
    that runs on the base install but has a server-side path (``doctor --server``,
    administration on the local store)."""
    try:
        yield
    except ModuleNotFoundError as exc:
        missing = missing_server_package(exc)
        if missing is None:
            raise
        explain_server_extra(what, missing, hint)


def needs_server_extra(name: str, missing: str) -> click.Command:
    """A stand-in for ``hokusai <name>`` that says what to install, whatever it is given."""

    def explain(
        args: Annotated[list[str] | None, typer.Argument(hidden=True)] = None,
    ) -> NoReturn:
        del args
        explain_server_extra(f"hokusai {name}", missing)

    stand_in = typer.Typer()
    stand_in.command(
        name,
        help=f"Needs the server extra: {SERVER_INSTALL}",
        short_help="(needs the server extra)",
        add_help_option=False,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )(explain)
    return typer.main.get_command(stand_in)


def load(command: LazyCommand) -> click.Command:
    """The click command of ``command``, importing its module now."""
    try:
        module = importlib.import_module(command.module)
    except ModuleNotFoundError as exc:
        missing = missing_server_package(exc)
        if missing is None:
            raise
        return needs_server_extra(command.name, missing)
    target: Any = getattr(module, command.attribute)
    if isinstance(target, typer.Typer):
        group = typer.main.get_group(target)
        group.name = command.name
        return group
    single = typer.Typer()
    single.command(command.name)(target)
    return typer.main.get_command(single)


class LazyCommands(MutableMapping[str, click.Command]):
    """A group's commands where each lazy one is loaded the first time it is read by
    name: listing the names loads nothing, reading every item loads every command."""

    def __init__(
        self, loaded: MutableMapping[str, click.Command], lazy: tuple[LazyCommand, ...]
    ) -> None:
        self._loaded = loaded
        self._lazy = {command.name: command for command in lazy}

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._loaded and name in self._lazy:
            self._loaded[name] = load(self._lazy[name])
        return self._loaded[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        self._lazy.pop(name, None)
        self._loaded.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        yield from self._lazy
        yield from (name for name in self._loaded if name not in self._lazy)

    def __len__(self) -> int:
        return len(self._lazy.keys() | self._loaded.keys())


class LazyGroup(TyperGroup):
    """The top-level ``hokusai`` group: the lazy commands of :attr:`lazy_commands` (in
    their order), then its own."""

    lazy_commands: tuple[LazyCommand, ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands = LazyCommands(self.commands, self.lazy_commands)

    def list_commands(self, ctx: click.Context) -> list[str]:
        del ctx
        return list(self.commands)  # the names: loads nothing


def lazy_group(commands: tuple[LazyCommand, ...]) -> type[LazyGroup]:
    """A :class:`LazyGroup` class that loads ``commands`` (typer takes a class, not an
    instance, as a Typer's group)."""
    return type("HokusaiGroup", (LazyGroup,), {"lazy_commands": commands})
