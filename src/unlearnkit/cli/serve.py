"""`unlearn serve MODEL`: an OpenAI-compatible HTTP server for a plain model or a ULD artifact."""

from __future__ import annotations

from pathlib import Path

import typer

from unlearnkit.cli.app import app, console
from unlearnkit.errors import UnlearnError
from unlearnkit.models.device import DEVICE_HELP, DTYPE_HELP


def served_name(model: str) -> str:
    """The model id clients see: a folder's name, or the hub ID / preset as given."""
    path = Path(model).expanduser()
    return path.resolve().name if path.is_dir() else model


def check_listen(host: str, port: int) -> None:
    """Fail early, in one line, when the address cannot be bound (port in use, unknown host)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(infos[0][4])
    except OSError as err:
        raise UnlearnError(f"cannot listen on {host}:{port} ({err.strerror or err}): choose another --port "
                           "or --host") from None


@app.command("serve")
def serve_cmd(
    model: str = typer.Argument(..., help="Model folder, ULD artifact, preset or hub ID."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0: every one)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535),
    name: str = typer.Option(None, "--served-model-name", help="Model id in the API (default: folder name)."),
    max_batch: int = typer.Option(8, "--max-batch", min=1, help="Concurrent requests decoded together."),
    max_request_bytes: int = typer.Option(1 << 20, "--max-request-bytes", min=1,
                                          help="Larger request bodies get HTTP 413."),
    weight: float = typer.Option(None, "--weight", help="ULD only: override the logit-difference weight w."),
    filter_factor: float = typer.Option(None, "--filter-factor", help="ULD only: override the filter f."),
    target: str = typer.Option(None, "--target", help="ULD only: the target model, if not where recorded."),
    tokenizer: str = typer.Option(None, "--tokenizer", help="Tokenizer dir (needed for a preset model)."),
    device: str = typer.Option(None, "--device", help=DEVICE_HELP),
    dtype: str = typer.Option(None, "--dtype", help=DTYPE_HELP),
    threads: int = typer.Option(None, "--threads", min=1, help="torch CPU threads."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code"),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level: info, warning, error."),
) -> None:
    """Serve MODEL over HTTP with the OpenAI API (/v1/models, /v1/chat/completions, /v1/completions)."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise UnlearnError("`unlearn serve` needs FastAPI and uvicorn: "
                           "pip install 'unlearnkit[serve]'") from None
    import torch

    from unlearnkit.cli.generate import load_for_generation
    from unlearnkit.methods.uld import is_uld_artifact
    from unlearnkit.models.device import Placement
    from unlearnkit.serve import serve

    check_listen(host, port)  # before the model loads: a busy port fails in a second, not a minute
    if target is not None and not is_uld_artifact(model):
        raise UnlearnError(f"--target applies to ULD artifacts only, and {model} is not one")
    if threads:
        torch.set_num_threads(threads)
    placement = Placement.resolve(device, dtype)
    m, tok, _ = load_for_generation(model, target, weight, filter_factor, tokenizer, placement,
                                    trust_remote_code)
    name = name or served_name(model)
    console.print(f"serving {name} ({type(m).__name__}, {placement.device}, {placement.dtype}) on "
                  f"http://{host}:{port}/v1", highlight=False)
    serve(m, tok, name, host=host, port=port, max_batch=max_batch, max_request_bytes=max_request_bytes,
          log_level=log_level)
