"""The ``hokusai`` command line."""

from __future__ import annotations

import typer

from hokusai import __version__
from hokusai.cli import audit, keys, serve

app = typer.Typer(
    help="Hokusai model registry platform.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("serve")(serve.serve)
app.add_typer(keys.app, name="keys")
app.command("audit")(audit.audit)


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)


if __name__ == "__main__":
    app()
