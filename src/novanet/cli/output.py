"""What the commands print: JSON, aligned plain-text tables, one-line messages, progress.

Tables are written as plain lines, not Rich tables: a listing can hold tens of
thousands of rows and must stream out fast. Rich is used only for progress on a
terminal (stderr), never when stderr is a pipe or a file.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

Progress = Callable[[int, int], None]

# Listings with more rows than this show progress while they are written out.
BIG_LISTING = 10_000
_WRITE_CHUNK = 4096


def message(text: str) -> None:
    """One line for a human on stdout."""
    sys.stdout.write(text + "\n")


def emit_json(data: Any) -> None:
    """Machine-readable output with the service's own keys.

    A list is written one element per line (json's C encoder per row: fast for 65k
    rows, still readable and greppable); anything else is indented.
    """
    out = sys.stdout
    if isinstance(data, list) and data:
        out.write("[\n")
        last = len(data) - 1
        for i, item in enumerate(data):
            out.write(json.dumps(item, default=str) + (",\n" if i < last else "\n"))
        out.write("]\n")
        return
    json.dump(data, out, indent=2, default=str)
    out.write("\n")


def cell(value: Any) -> str:
    """Text of one table cell, as nova-manage printed it (None stays 'None')."""
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Write an aligned table: columns padded to their widest cell, two spaces apart."""
    text_rows = [[cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        for i, v in enumerate(row):
            if len(v) > widths[i]:
                widths[i] = len(v)
    last = len(headers) - 1

    def fmt(row: Sequence[str]) -> str:
        # The last column is not padded: no trailing blanks.
        return "  ".join(v if i == last else v.ljust(widths[i]) for i, v in enumerate(row))

    out = sys.stdout
    out.write(fmt(list(headers)) + "\n")
    with _write_progress(len(text_rows)) as tick:
        for lo in range(0, len(text_rows), _WRITE_CHUNK):
            chunk = text_rows[lo : lo + _WRITE_CHUNK]
            out.write("".join(fmt(r) + "\n" for r in chunk))
            if tick is not None:
                tick(lo + len(chunk), len(text_rows))


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def progress(description: str) -> Iterator[Progress | None]:
    """A progress callback (done, total) drawing a bar on stderr, or None off a terminal."""
    if not _stderr_is_terminal():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
        redirect_stdout=False,
        redirect_stderr=False,
    )
    task = bar.add_task(description, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    with bar:
        yield update


@contextlib.contextmanager
def spinner(description: str) -> Iterator[None]:
    """A transient "working" indicator on stderr while a long read runs (terminal only)."""
    if not _stderr_is_terminal():
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(description):
        yield


@contextlib.contextmanager
def _write_progress(rows: int) -> Iterator[Progress | None]:
    # Only when stdout goes to a file or pipe: a bar redrawn between table lines on the
    # same terminal would garble both.
    if rows <= BIG_LISTING or _stdout_is_terminal():
        yield None
        return
    with progress("writing rows") as tick:
        yield tick
