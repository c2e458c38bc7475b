"""The ``hokusai`` command line."""

from __future__ import annotations

from typing import Annotated

import typer

from hokusai.cli.lazy_commands import LazyCommand, lazy_group
from hokusai.version import __version__

# Each command's module is imported when the command is looked up, never all at start:
# the client commands run on the base install, and a server command run without the
# ``server`` extra says what to install (hokusai.cli.lazy_commands).
COMMANDS = (
    LazyCommand("serve", "hokusai.cli.serve", "serve"),
    LazyCommand("keys", "hokusai.cli.keys", "app"),
    LazyCommand("audit", "hokusai.cli.audit", "audit"),
    LazyCommand("workspaces", "hokusai.cli.workspaces", "app"),
    LazyCommand("login", "hokusai.cli.account", "login"),
    LazyCommand("whoami", "hokusai.cli.account", "whoami"),
    LazyCommand("models", "hokusai.cli.models", "models_app"),
    LazyCommand("model", "hokusai.cli.models", "model_app"),  # the older name of `models register`
    LazyCommand("gc", "hokusai.cli.gc", "gc"),
    LazyCommand("webhooks", "hokusai.cli.webhooks", "app"),
    LazyCommand("worker", "hokusai.cli.worker", "worker"),
    LazyCommand("doctor", "hokusai.cli.doctor", "doctor"),
)

app = typer.Typer(
    cls=lazy_group(COMMANDS),
    help="Hokusai model registry platform.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        print(f"hokusai {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Hokusai model registry platform."""


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)


if __name__ == "__main__":
    app()
