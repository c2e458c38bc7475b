"""Tables that fit a terminal and a script.

Ids, key prefixes and event ids are never cut (rich would shorten them to ``key_a48…``):
those columns keep their full width and the others wrap. Without a terminal (a pipe, a
file) a table is printed at its full width, never wrapped at 80 columns.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

# Wide enough for any row; rich does not pad a table that is not expanded.
_UNLIMITED = 100_000


def print_table(
    columns: Sequence[str], rows: Sequence[Sequence[str]], *, whole: Sequence[str]
) -> None:
    """Print ``rows`` under ``columns``; the columns named in ``whole`` are never cut."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=_UNLIMITED)
    table = Table()
    for index, name in enumerate(columns):
        if name in whole:
            width = max([len(name), *(len(row[index]) for row in rows)])
            table.add_column(name, no_wrap=True, min_width=width)
        else:
            table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)
