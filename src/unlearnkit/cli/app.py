"""The typer app and the error boundary: a UnlearnError becomes one red line and exit code 2."""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console

from unlearnkit.errors import UnlearnError

app = typer.Typer(
    name="unlearn",
    help="LLM machine unlearning: ULD, UOE, baselines, TOFU-exact evaluation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
_state = {"debug": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    _state["debug"] = debug
    # Our progress (unlearnkit.progress) reports the work: no "Loading weights" / "Writing model shards"
    # tqdm bars from the libraries, here or in the processes a command starts (read at their import).
    for var in ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS"):
        os.environ.setdefault(var, "1")


def main() -> None:
    """Console-script entry point."""
    debug = "--debug" in sys.argv
    try:
        app(standalone_mode=False)
    except UnlearnError as err:
        if debug:
            raise
        console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        sys.exit(130)
    except (typer.Exit, SystemExit) as exc:
        sys.exit(getattr(exc, "exit_code", getattr(exc, "code", 0)) or 0)
    except Exception as err:  # click usage errors arrive here in standalone_mode=False
        import click

        if isinstance(err, click.exceptions.ClickException):
            err.show()
            sys.exit(err.exit_code)
        if isinstance(err, click.exceptions.Abort):
            sys.exit(1)
        raise
