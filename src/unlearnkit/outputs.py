"""Output directories that are either complete or absent, and the provenance recorded in each.

A run writes into `.<out>.partial-<pid>-*` and is renamed to `<out>` only when everything is written,
so a failed run never leaves a half-written output behind; what a killed process (SIGKILL) left is
removed by the next run to the same output.
"""

from __future__ import annotations

import io
import json
import os
import platform
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from unlearnkit.errors import UnlearnError

_KEPT_ON_INTERRUPT: list[str] = []


def kept_on_interrupt() -> list[str]:
    """What an interrupted command leaves on purpose (e.g. checkpoints to --resume); the CLI names it."""
    return _KEPT_ON_INTERRUPT


def resolve_out(out: Path | str, flag: str = "--out") -> Path:
    """The absolute output path with symlinks followed; a symlink loop is the user's error, not a crash."""
    try:
        return Path(out).expanduser().resolve()
    except (RuntimeError, OSError) as err:
        raise UnlearnError(f"{flag} {out} cannot be resolved ({getattr(err, 'strerror', None) or err}; "
                           "a symlink loop?): choose another {flag}".replace("{flag}", flag)) from None


def check_out_spares_inputs(out: Path | str, inputs: dict[str, object], flag: str = "--out") -> None:
    """The output must not be an input, hold one (it is replaced whole), or lie inside an input directory.

    `inputs` maps a flag name (--model, --data, ...) to a path, a list of paths, or None; values that
    are not existing paths (preset names, hub ids) are skipped. This holds even with --overwrite.
    """
    target = resolve_out(out, flag)
    inputs = {**inputs, "world": _worlds_holding(inputs)}
    for name, values in inputs.items():
        for value in values if isinstance(values, list | tuple) else [values]:
            if not value or not Path(str(value)).expanduser().exists():
                continue
            path = Path(str(value)).expanduser().resolve()
            if path == target or target in path.parents:
                raise UnlearnError(f"{flag} {out} would replace the {name} input {value}: "
                                   "choose an output directory outside the inputs")
            if path.is_dir() and path in target.parents:
                raise UnlearnError(f"{flag} {out} is inside the {name} input {value}: writing there would "
                                   "change an input; choose an output directory outside it")


def _worlds_holding(inputs: dict[str, object]) -> list[Path]:
    """Prepared worlds (a directory with prepare.json) that hold one of the inputs: also inputs."""
    worlds = []
    for values in inputs.values():
        for value in values if isinstance(values, list | tuple) else [values]:
            if not value or not Path(str(value)).expanduser().exists():
                continue
            path = Path(str(value)).expanduser().resolve()
            for parent in list(path.parents)[:3]:
                if (parent / "prepare.json").is_file():
                    worlds.append(parent)
                    break
    return worlds


def check_out_dir(out: Path, overwrite: bool, inputs: dict[str, object] | None = None,
                  flag: str = "--out", reusable: tuple[str, ...] = ()) -> None:
    """The one output policy, checked before any work: a directory (or nothing) that spares the inputs,
    empty unless --overwrite (or holding only `reusable` names: this command's own earlier output),
    under a writable parent."""
    out = Path(out)
    target = resolve_out(out, flag)
    if inputs:
        check_out_spares_inputs(out, inputs, flag)
    if target.exists() and not target.is_dir():
        raise UnlearnError(f"output {out} exists and is not a directory: choose another {flag}")
    if target.is_dir() and not overwrite:
        foreign = [p.name for p in target.iterdir()  # hidden names: temp dirs a killed run of ours left
                   if p.name not in reusable and not (reusable and p.name.startswith("."))]
        if foreign:
            raise UnlearnError(f"output directory {out} is not empty (holds {foreign[0]}"
                               f"{' and more' if len(foreign) > 1 else ''}): pass --overwrite or choose "
                               f"another {flag}")
    _check_parent_writable(target, flag)


def check_out_file(out: Path, inputs: dict[str, object] | None = None, flag: str = "--out") -> None:
    """The output policy for a command that writes files (report.md and its siblings), before any work."""
    target = resolve_out(out, flag)
    if inputs:
        check_out_spares_inputs(out, inputs, flag)
    if target.is_dir():
        raise UnlearnError(f"{flag} {out} is a directory: name a file, e.g. {Path(out) / 'report.md'}")
    _check_parent_writable(target, flag)


def _check_parent_writable(target: Path, flag: str) -> None:
    parent = target.parent
    while not parent.exists() and not parent.is_symlink():
        parent = parent.parent
    if not parent.is_dir():
        raise UnlearnError(f"cannot write under {parent}: it is a file, not a directory; "
                           f"choose another {flag}")
    if not os.access(parent, os.W_OK):
        raise UnlearnError(f"cannot write to {parent}: choose a writable {flag}")
    if target.is_dir() and not os.access(target, os.W_OK):
        raise UnlearnError(f"cannot write to {target}: choose a writable {flag}")


@contextmanager
def atomic_dir(out: Path, overwrite: bool = False, inputs: dict[str, object] | None = None):
    """Yield a temporary sibling directory; on success it replaces `out`, on failure it is removed."""
    out = Path(out)
    check_out_dir(out, overwrite, inputs)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(out)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-{os.getpid()}-"))
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private (0700); the output is a normal directory
    except OSError as err:
        raise UnlearnError(f"cannot write to {out.parent} ({err.strerror}): "
                           "choose a writable --out") from None
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, out)


def replace_dir(src: Path, dest: Path) -> None:
    """Move directory src to dest; an existing dest is moved aside first, so dest is never half-deleted.

    The aside copy is named like a partial output, so remove_stale_partials cleans it if we are killed.
    """
    if dest.exists():
        old = dest.with_name(f".{dest.name}.partial-{os.getpid()}-old")
        os.replace(dest, old)
        os.replace(src, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dest)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(out: Path) -> None:
    """Delete `.<out>.partial-<pid>-*` dirs whose process is gone (killed before it could clean up)."""
    for tmp in Path(out).parent.glob(f".{Path(out).name}.partial-*"):
        pid = tmp.name.rsplit(".partial-", 1)[1].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def write_bytes(path: Path, data: bytes) -> Path:
    """Bytes written to a temp name beside `path` and renamed, so readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private (0600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: Path, text: str) -> Path:
    """UTF-8 text written atomically."""
    return write_bytes(path, text.encode("utf-8"))


def save_figure(fig, path: Path, **savefig_kwargs) -> Path:
    """A matplotlib figure rendered in memory (format from the suffix), then written atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=Path(path).suffix.lstrip(".") or "png", **savefig_kwargs)
    return write_bytes(path, buffer.getvalue())


def write_json(path: Path, data: dict) -> Path:
    """JSON (indented, one trailing newline) written atomically."""
    return write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def provenance(seed: int, config_hash: str | None = None) -> dict:
    """Seed, versions and config hash: what is needed to reproduce a number."""
    import accelerate
    import peft
    import torch
    import transformers

    import unlearnkit

    return {
        "seed": seed,
        "config_hash": config_hash,
        "versions": {"unlearnkit": unlearnkit.__version__, "torch": torch.__version__,
                     "transformers": transformers.__version__, "peft": peft.__version__,
                     "accelerate": accelerate.__version__, "python": platform.python_version()},
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "cuda": torch.cuda.is_available()},
    }
