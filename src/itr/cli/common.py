"""Console helpers shared by the command modules: output streams, one-line errors, progress bars."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..errors import ItrError
from ..records import json_safe

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

T = TypeVar("T")


def print_json(obj: Any, *, compact: bool = False) -> None:
    """``obj`` as one JSON document on stdout, always valid (RFC 8259): no NaN, no undecodable bytes
    (names that are not UTF-8 get backslash escapes), whatever the index or report holds.
    ``compact``: one line whatever the terminal (JSON Lines, one document per query)."""
    indent = 2 if sys.stdout.isatty() and not compact else None
    text = json.dumps(json_safe(obj), ensure_ascii=False, allow_nan=False, indent=indent)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def errors(*, exit_on_error: bool = True) -> Iterator[None]:
    """Turn library errors into one line on stderr and exit code 2 (130 for interruptions).
    ``exit_on_error=False``: print the line and go on (one bad query in a stream of them)."""
    try:
        yield
    except ItrError as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not exit_on_error:
            err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True)
            return
        fail(message)
    except KeyboardInterrupt:
        err.print("interrupted: work committed so far is kept; run the same command again to resume")
        raise typer.Exit(130) from None


@contextmanager
def progress_bar(label: str, enabled: bool) -> Iterator[Callable[[int, int], None]]:
    if not enabled:
        yield lambda done, total: None
        return
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=err, transient=False) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@contextmanager
def progress_bars(enabled: bool) -> Iterator[Callable[[str], Callable[[int, int], None]]]:
    """Several progress bars in one display (rich allows one live display at a time): ``bar(label)``
    gives the update function of a bar that appears at its first update."""
    if not enabled:
        yield lambda label: (lambda done, total: None)
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=err, transient=False) as bars:
        def bar(label: str) -> Callable[[int, int], None]:
            task: list[Any] = []

            def update(done: int, total: int) -> None:
                if not task:
                    task.append(bars.add_task(label, total=total))
                bars.update(task[0], completed=done, total=total)

            return update

        yield bar


def with_spinner(message: str, fn: Callable[[], T], quiet: bool) -> T:
    if quiet:
        return fn()
    with err.status(message):
        return fn()
