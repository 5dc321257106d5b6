"""The typer app and the one error boundary of the CLI.

Every way a command can end maps to one exit code and at most one line on stderr:
    our UnlearnError                       -> "error: <what is wrong and what to do>", exit 2
    a usage error (unknown flag/command,    -> "error: <click's message> (see `unlearn CMD --help`)",
      bad value, missing option)              exit 2 -- click's own or typer's vendored copy alike
    Ctrl-C / SIGTERM                        -> "interrupted ...", exit 130 (temporary outputs are removed
                                              by their context managers; checkpoints are kept and named)
    anything else                           -> "error: internal error ...", exit 1 (traceback with --debug)
"""

from __future__ import annotations

import os
import signal
import sys

import typer
from rich.console import Console

from unlearnkit.errors import UnlearnError
from unlearnkit.outputs import kept_on_interrupt

app = typer.Typer(
    name="unlearn",
    help="LLM machine unlearning: ULD, UOE, baselines, TOFU-exact evaluation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
_state: dict = {"debug": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    _state["debug"] = debug
    # Our progress (unlearnkit.progress) reports the work: no "Loading weights" / "Writing model shards"
    # tqdm bars from the libraries, here or in the processes a command starts (read at their import).
    for var in ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS"):
        os.environ.setdefault(var, "1")


def deprecated_alias(old: str, old_value, new: str, new_value):
    """The value of a renamed flag given under either spelling; the old one prints a one-line notice."""
    if old_value is None:
        return new_value
    if new_value is not None and new_value != old_value:
        raise UnlearnError(f"{old} (deprecated) and {new} disagree ({old_value} vs {new_value}): pass {new}")
    console.print(f"[yellow]deprecated:[/] {old} is now {new}; the old spelling will be removed",
                  highlight=False, soft_wrap=True)
    return old_value


def _exception_types(name: str) -> tuple[type, ...]:
    """`name` from click.exceptions and from typer's vendored click (typer >= 0.16 raises its own)."""
    found = []
    for module in ("click.exceptions", "typer._click.exceptions", "typer.exceptions"):
        try:
            mod = __import__(module, fromlist=[name])
        except ImportError:
            continue
        if isinstance(getattr(mod, name, None), type):
            found.append(getattr(mod, name))
    return tuple(found)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _flags_as_flags(command, name: str = "unlearn") -> None:
    """Boolean flags (and --help) show no `<bool>` value in help: they take none."""
    params = list(getattr(command, "params", []))
    try:
        params.append(command.get_help_option(type(command).context_class(command, info_name=name)))
    except Exception:  # noqa: BLE001 -- cosmetic only; an older click builds --help differently
        pass
    for param in params:
        if getattr(param, "is_flag", False) and not getattr(param, "count", False):
            param.metavar = ""
    for sub_name, sub in getattr(command, "commands", {}).items():
        _flags_as_flags(sub, sub_name)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _interrupted() -> None:
    kept = "; ".join(kept_on_interrupt())
    console.print(f"[yellow]interrupted[/]{': ' + kept if kept else ''}", highlight=False, soft_wrap=True)
    sys.exit(130)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: parse, run, and map every outcome through the boundary above."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    kept_on_interrupt().clear()
    try:
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)  # `kill PID` ends like Ctrl-C
    except ValueError:  # not the main thread (an embedding application): leave its handlers alone
        previous = None
    try:
        _run(args, debug)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(args: list[str], debug: bool) -> None:
    usage_errors = _exception_types("ClickException")
    aborts = _exception_types("Abort")
    exits = _exception_types("Exit")
    command = typer.main.get_command(app)
    _flags_as_flags(command)
    try:
        with command.make_context("unlearn", args) as ctx:
            command.invoke(ctx)
    except UnlearnError as err:
        if debug:
            raise
        console.print(f"[bold red]error:[/] {_one_line(err)}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        _interrupted()
    except exits as exc:
        code = getattr(exc, "exit_code", 0) or 0
        if code == 130:  # typer turns a KeyboardInterrupt into Exit(130) on its way out
            _interrupted()
        sys.exit(code)
    except aborts:
        _interrupted()
    except usage_errors as err:
        if type(err).__name__ == "NoArgsIsHelpError":  # bare `unlearn` / `unlearn CMD`: show the help
            typer.echo(err.format_message())
            sys.exit(0)
        if debug:
            raise
        ctx = getattr(err, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        console.print(f"[bold red]error:[/] {_one_line(err.format_message())}{hint}", highlight=False,
                      soft_wrap=True)
        sys.exit(2)
    except SystemExit:
        raise
    except Exception as err:
        if debug:
            raise
        console.print(f"[bold red]error:[/] internal error {type(err).__name__}: {_one_line(err)[:300]} "
                      "(rerun with --debug for the traceback, and please report it)", highlight=False,
                      soft_wrap=True)
        sys.exit(1)
