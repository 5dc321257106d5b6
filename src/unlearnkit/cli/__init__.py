"""The `unlearn` command line: one module per command, all registered on one typer app.

Commands only wire library functions together; the work lives in data/, models/, methods/, eval/.
"""

# ruff: noqa: I001  (the app must exist before the command modules register on it)
from unlearnkit.cli.app import app, main

# Each import registers its command(s) on `app`; a command exists only once its module does.
from unlearnkit.cli import bench as _bench  # noqa: E402,F401
from unlearnkit.cli import demo as _demo  # noqa: E402,F401
from unlearnkit.cli import eval as _eval  # noqa: E402,F401
from unlearnkit.cli import experts as _experts  # noqa: E402,F401
from unlearnkit.cli import finetune as _finetune  # noqa: E402,F401
from unlearnkit.cli import generate as _generate  # noqa: E402,F401
from unlearnkit.cli import mcq as _mcq  # noqa: E402,F401
from unlearnkit.cli import methods as _methods  # noqa: E402,F401
from unlearnkit.cli import prepare as _prepare  # noqa: E402,F401
from unlearnkit.cli import report as _report  # noqa: E402,F401
from unlearnkit.cli import run as _run  # noqa: E402,F401
from unlearnkit.cli import serve as _serve  # noqa: E402,F401

__all__ = ["app", "main"]
