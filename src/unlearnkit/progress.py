"""Progress for training and evaluation: rich bars on a terminal, plain periodic lines otherwise.

One mechanism for every command. `progress_bars(console)` yields the factory eval/ and the pipeline
take, `progress(description, total) -> advance(n)`; `TrainProgress` is a TrainerCallback showing
steps, ETA and the live loss as one task of such a factory. On a terminal it draws rich bars; when
the console is not a terminal (a batch job's log, a pipe) it prints one plain line per task every
`interval` seconds ($UNLEARNKIT_PROGRESS_INTERVAL, default 30) and one when the task completes, so
a long run is never silent. transformers' / datasets' own tqdm bars ("Loading weights", "Writing
model shards") are switched off by `silence_hf_progress` (progress_bars calls it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from transformers import TrainerCallback

INTERVAL_ENV = "UNLEARNKIT_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 30.0
ProgressFactory = Callable[[str, int], Callable[[int], None]]


def progress_interval() -> float:
    """Seconds between plain progress lines ($UNLEARNKIT_PROGRESS_INTERVAL, default 30)."""
    value = os.environ.get(INTERVAL_ENV)
    try:
        return max(0.0, float(value)) if value else DEFAULT_INTERVAL
    except ValueError:
        return DEFAULT_INTERVAL


def silence_hf_progress() -> None:
    """Turn off transformers' / datasets' / huggingface_hub's tqdm bars: ours report the work."""
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as hf_logging

    disable_progress_bars()
    hf_logging.disable_progress_bar()
    try:
        from datasets.utils.logging import disable_progress_bar
    except ImportError:
        return
    disable_progress_bar()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class PlainLines:
    """Progress as log lines: `desc n/total (p%) elapsed m:ss, eta m:ss [extra]`, at most one per
    `interval` seconds per task, and always one at completion."""

    def __init__(self, console: Console, interval: float | None = None):
        self.console = console
        self.interval = progress_interval() if interval is None else interval

    def task(self, desc: str, total: int) -> Callable[..., None]:
        """advance(n=1, extra="", completed=None) for one task of `total` units."""
        start = time.monotonic()
        state = {"done": 0, "last": start}

        def advance(n: int = 1, extra: str | None = None, completed: int | None = None) -> None:
            state["done"] = completed if completed is not None else state["done"] + n
            now, done = time.monotonic(), state["done"]
            finished = total and done >= total
            if not finished and now - state["last"] < self.interval:
                return
            state["last"] = now
            elapsed = now - start
            eta = f", eta {_clock(elapsed * (total - done) / done)}" if done and not finished else ""
            pct = f" ({100 * done / total:.0f}%)" if total else ""
            tail = f"  {extra}" if extra else ""
            self.console.print(f"{desc} {done}/{total}{pct} elapsed {_clock(elapsed)}{eta}{tail}",
                               highlight=False, markup=False, soft_wrap=True)

        return advance


@contextmanager
def progress_bars(console: Console, interval: float | None = None) -> Iterator[ProgressFactory]:
    """Yield progress(description, total) -> advance(n, extra=""): rich bars on a terminal, else plain
    lines. `extra` is a short live status shown after the bar (the training loss)."""
    silence_hf_progress()
    if not console.is_terminal:
        lines = PlainLines(console, interval)
        yield lambda desc, total: lines.task(desc, total)
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description:<36}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[extra]}"))
    with Progress(*columns, console=console, transient=False) as bars:
        def progress(desc: str, total: int) -> Callable[..., None]:
            task = bars.add_task(desc, total=total, extra="")

            def advance(n: int = 1, extra: str | None = None, completed: int | None = None) -> None:
                fields = {} if extra is None else {"extra": extra}
                if completed is not None:
                    bars.update(task, completed=completed, **fields)
                else:
                    bars.update(task, advance=n, **fields)

            return advance

        yield progress


def labelled(progress: ProgressFactory | None, label: str) -> ProgressFactory | None:
    """The same factory with every task named after the model being scored: `[label] desc`."""
    if progress is None:
        return None
    return lambda desc, total: progress(f"[{label}] {desc}", total)


def timed(progress: ProgressFactory | None, passes: dict[str, dict]) -> ProgressFactory | None:
    """The same factory, also recording each task's size and seconds into `passes` (eval_meta.json)."""
    if progress is None:
        return None

    def factory(desc: str, total: int):
        advance, start = progress(desc, total), time.perf_counter()
        passes[desc] = {"n": total, "seconds": 0.0}

        def step(n: int = 1, **kwargs) -> None:
            advance(n, **kwargs)
            passes[desc]["seconds"] = round(time.perf_counter() - start, 3)

        return step

    return factory


class TrainProgress(TrainerCallback):
    """Training steps with ETA and the live loss, as one task of a `progress_bars` factory."""

    def __init__(self, progress: ProgressFactory, description: str = "train"):
        self.progress, self.description = progress, description
        self.loss = "-"
        self.advance = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.advance = self.progress(self.description, state.max_steps)
            if state.global_step:  # resumed
                self.advance(completed=state.global_step, extra="resumed")

    def on_step_end(self, args, state, control, **kwargs):
        if self.advance is not None:
            self.advance(completed=state.global_step, extra=f"epoch {state.epoch or 0:.2f}  loss {self.loss}")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.loss = f"{logs['loss']:.4g}"

    def on_train_end(self, args, state, control, **kwargs):
        self.advance = None
