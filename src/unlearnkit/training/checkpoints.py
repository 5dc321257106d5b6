"""Where a run's Trainer checkpoints live, which one to resume from, and atomic model saves.

A run checkpoints into OUT.checkpoints/ (beside the output, which is built in a temp dir and renamed
at the end), stamped with the hash of the config it belongs to; a checkpoint counts only once its
marker is written (training.callbacks.CheckpointMarker, last of the on_save callbacks).
"""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path

from unlearnkit import outputs
from unlearnkit.errors import UnlearnError
from unlearnkit.outputs import replace_dir, write_json

CHECKPOINT_MARKER = "unlearnkit_checkpoint.json"  # written last: a checkpoint without it is incomplete
CHECKPOINT_CONFIG = "unlearnkit_run.json"  # in <out>.checkpoints/: the config hash the checkpoints belong to


def save_model_atomic(model, path, tokenizer=None) -> Path:
    """save_pretrained (safetensors; a peft model saves only its adapter) into a temp dir, then rename."""
    from peft import PeftModel

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    if tokenizer is not None and not isinstance(model, PeftModel):
        tokenizer.save_pretrained(tmp)
    replace_dir(tmp, path)
    return path


def find_checkpoint(checkpoint_dir) -> Path | None:
    """The newest complete checkpoint-N folder (marker present and readable), or None."""
    root = Path(checkpoint_dir)
    found = []
    for folder in root.glob("checkpoint-*") if root.is_dir() else ():
        step = folder.name.removeprefix("checkpoint-")
        if step.isdigit() and (folder / CHECKPOINT_MARKER).is_file():
            try:
                json.loads((folder / CHECKPOINT_MARKER).read_text())
            except (OSError, json.JSONDecodeError):
                continue
            found.append((int(step), folder))
    return max(found)[1] if found else None


def drop_incomplete_checkpoints(checkpoint_dir) -> None:
    """Remove checkpoint folders newer than the last complete one (a kill mid-save leaves them)."""
    last = find_checkpoint(checkpoint_dir)
    last_step = int(last.name.removeprefix("checkpoint-")) if last else -1
    for folder in Path(checkpoint_dir).glob("checkpoint-*"):
        step = folder.name.removeprefix("checkpoint-")
        if not step.isdigit() or int(step) > last_step:
            shutil.rmtree(folder, ignore_errors=True)


def checkpoint_dir_for(out: Path) -> Path:
    """Where a run's Trainer checkpoints live: next to the output (which is built in a temp dir and
    renamed at the end), so a killed run finds them again. Removed when the run succeeds."""
    out = Path(out)
    return out.parent / f"{out.name}.checkpoints"


def prepare_checkpoints(ckpt: Path, enabled: bool, *, resume: bool, overwrite: bool, config_hash: str,
                        seed: int) -> Path | None:
    """The checkpoint to resume from (None: start fresh); refuses stale or foreign checkpoints.

    `config_hash` identifies the run's config: checkpoints stamped with another are not resumed.
    """
    stamp = ckpt / CHECKPOINT_CONFIG
    if not resume:
        if ckpt.exists() and not overwrite:
            raise UnlearnError(f"checkpoints of an interrupted run are in {ckpt}: pass --resume to continue "
                               "it, or --overwrite to start over")
        shutil.rmtree(ckpt, ignore_errors=True)
    elif stamp.is_file():
        saved = json.loads(stamp.read_text()).get("config_hash")
        if saved != config_hash:
            raise UnlearnError(f"checkpoints in {ckpt} come from a different config (hash {saved} vs "
                               f"{config_hash}): resume with the same config, or drop --resume")
    if not enabled:
        return None
    ckpt.mkdir(parents=True, exist_ok=True)
    write_json(stamp, {"config_hash": config_hash, "seed": seed})
    drop_incomplete_checkpoints(ckpt)
    return find_checkpoint(ckpt) if resume else None


@contextmanager
def tidy_checkpoints(ckpt: Path, main: bool = True):
    """A run that fails before its first checkpoint leaves no OUT.checkpoints/ (the corrected command
    would otherwise be refused as an interrupted run); one that has checkpoints keeps and names them.
    Only the main process (`main`) tidies."""
    try:
        yield
    except BaseException as err:
        if not main:
            raise
        if find_checkpoint(ckpt) is None:
            shutil.rmtree(ckpt, ignore_errors=True)
        elif isinstance(err, KeyboardInterrupt):
            outputs.kept_on_interrupt().append(
                f"checkpoints kept in {ckpt}; continue with the same command and --resume")
        raise
