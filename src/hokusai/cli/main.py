"""The ``hokusai`` command line."""

from __future__ import annotations

from typing import Annotated

import typer

from hokusai.cli import account, audit, doctor, gc, keys, models, serve, webhooks, worker
from hokusai.version import __version__

app = typer.Typer(
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


app.command("serve")(serve.serve)
app.add_typer(keys.app, name="keys")
app.command("audit")(audit.audit)
app.command("login")(account.login)
app.command("whoami")(account.whoami)
app.add_typer(models.models_app, name="models")
app.add_typer(models.model_app, name="model")  # the older name of `models register`
app.command("gc")(gc.gc)
app.add_typer(webhooks.app, name="webhooks")
app.command("worker")(worker.worker)
app.command("doctor")(doctor.doctor)


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)


if __name__ == "__main__":
    app()
