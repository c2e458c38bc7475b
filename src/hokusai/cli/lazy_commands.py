"""Commands imported only when they run, and the answer when their packages are missing.

The base install (``pip install hokusai-ml-platform``) is the SDK and the client side of
the CLI; the gateway, the stores and webhooks come with the ``server`` extra. A command's
module is imported the first time the command is looked up (to run it, or to list it in
``--help``), so a client command never pays for, or depends on, the server's packages.
When a command's module needs one that is not installed, the command is replaced by one
that says what to install and exits non-zero — decided here, once, for every command.
"""

from __future__ import annotations

import importlib
import sys
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


def needs_server_extra(name: str, missing: str) -> click.Command:
    """A stand-in for ``hokusai <name>`` that says what to install, whatever it is given."""

    def explain(
        args: Annotated[list[str] | None, typer.Argument(hidden=True)] = None,
    ) -> NoReturn:
        del args
        print(
            f"hokusai {name} needs the server extra: {SERVER_INSTALL}\n"
            f"(the Python package {missing!r} is not installed)",
            file=sys.stderr,
        )
        sys.exit(EXIT_NEEDS_SERVER_EXTRA)

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


class LazyGroup(TyperGroup):
    """The top-level ``hokusai`` group: its own commands, then the lazy ones of
    :data:`LAZY_COMMANDS`, each loaded (once) when it is looked up."""

    lazy_commands: tuple[LazyCommand, ...] = ()

    def list_commands(self, ctx: click.Context) -> list[str]:
        lazy = [c.name for c in self.lazy_commands if c.name not in self.commands]
        return [*lazy, *super().list_commands(ctx)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is not None:
            return found
        for command in self.lazy_commands:
            if command.name == cmd_name:
                loaded = load(command)
                self.add_command(loaded, cmd_name)
                return loaded
        return None


def lazy_group(commands: tuple[LazyCommand, ...]) -> type[LazyGroup]:
    """A :class:`LazyGroup` class that loads ``commands`` (typer takes a class, not an
    instance, as a Typer's group)."""
    return type("HokusaiGroup", (LazyGroup,), {"lazy_commands": commands})
