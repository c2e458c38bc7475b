"""The ``hokusai`` command line."""

from __future__ import annotations

import typer

from hokusai.cli import account, audit, doctor, gc, keys, models, serve, webhooks, worker
from hokusai.version import __version__

app = typer.Typer(
    help="Hokusai model registry platform.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
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
