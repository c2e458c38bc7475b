"""Where the commands write what is not their output: stderr, and a failure's message.

Light on purpose (rich and typer only): every command imports it, the client commands
on the base install too.
"""

from __future__ import annotations

import typer
from rich.console import Console

err = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: <message>`` on stderr and return the ``typer.Exit`` to raise:
    ``raise fail("...")``."""
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)
