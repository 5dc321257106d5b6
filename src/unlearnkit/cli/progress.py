"""The CLI's progress factory: rich bars on a terminal, plain periodic lines in a log (see progress.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from unlearnkit.cli.app import console


@contextmanager
def progress_bars() -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """Yield progress(description, total) -> advance(n), the callback shape eval/ and pipeline take."""
    from unlearnkit.progress import progress_bars as bars

    with bars(console) as progress:
        yield progress
