"""A run killed with SIGKILL mid-training resumes (--resume) and ends with exactly the numbers of an
uninterrupted run; stale or foreign checkpoints are refused; NaN stops training and keeps the last
good checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import run_cli
from safetensors.torch import load_file

from unlearnkit.training.checkpoints import CHECKPOINT_MARKER


@pytest.fixture
def one_thread():
    """Same kernels as the OMP_NUM_THREADS=1 subprocess, so results can be compared bit for bit."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def uld_args(world, out: Path, *extra: str) -> list:
    """ULD on forget10 without augmentation, with per-epoch best-adapter selection on the world's
    validation file: 4 epochs x 3 steps (one log per epoch, so log windows do not straddle the resume
    point), a small evaluation."""
    return ["run", "--method", "uld", "--model", world.target_dir, "--data", world.data_dir,
            "--forget", "forget10", "--reference", world.retain_dirs["forget10"], "--out", out,
            "--epochs", "4", "--max-samples", "4", "eval.max_new_tokens=16", "train.batch_size=4",
            "train.grad_accum=1", "train.logging_steps=3", "method.params.select_best_epoch=true",
            f"method.params.validation_file={world.data_dir / 'forget10_validation.jsonl'}", *extra]


def kill_at_first_checkpoint(args: list, checkpoints: Path) -> None:
    """Start `unlearn ARGS` in a subprocess and SIGKILL it as soon as one checkpoint is complete."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "unlearnkit.cli", *map(str, args)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not list(checkpoints.glob(f"checkpoint-*/{CHECKPOINT_MARKER}")):
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) before its first checkpoint:\n"
                        f"{proc.stderr.read()}")
        assert time.monotonic() < deadline, "no checkpoint within 10 minutes"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"


@pytest.mark.slow  # 24 s on a busy machine: three training runs
def test_sigkill_then_resume_equals_uninterrupted(micro_world, tmp_path, capsys, one_thread):
    out = tmp_path / "killed"
    checkpoints = tmp_path / "killed.checkpoints"
    kill_at_first_checkpoint(uld_args(micro_world, out), checkpoints)
    assert not out.exists()
    assert list(tmp_path.glob(".killed.partial-*"))  # what SIGKILL leaves; the next run removes it

    # Leftover checkpoints are never silently reused or silently dropped.
    code, err = run_cli(capsys, *uld_args(micro_world, out))
    assert code == 2 and "checkpoints of an interrupted run" in err and "--resume" in err, err
    code, err = run_cli(capsys, *uld_args(micro_world, out, "--resume", "method.params.kl_weight=4"))
    assert code == 2 and "different config" in err, err

    code, err = run_cli(capsys, *uld_args(micro_world, out, "--resume"))
    assert code == 0, err
    assert not checkpoints.exists() and not list(tmp_path.glob(".killed.*"))
    resumed = json.loads((out / "run.json").read_text())
    assert resumed["resumed_from"] and resumed["resumed_from"].startswith("checkpoint-")

    clean = tmp_path / "clean"
    code, err = run_cli(capsys, *uld_args(micro_world, clean))
    assert code == 0, err
    uninterrupted = json.loads((clean / "run.json").read_text())
    assert uninterrupted["resumed_from"] is None

    assert resumed["global_steps"] == uninterrupted["global_steps"] == 12
    assert resumed["epoch_choice"] == uninterrupted["epoch_choice"]
    assert [h["epoch"] for h in resumed["epoch_choice"]["history"]] == [1, 2, 3, 4]
    summary = json.loads((out / "eval" / "TOFU_SUMMARY.json").read_text())
    assert summary == json.loads((clean / "eval" / "TOFU_SUMMARY.json").read_text())
    a = load_file(out / "model" / "adapter_model.safetensors")
    b = load_file(clean / "model" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    losses = [e["loss"] for e in resumed["log_history"] if "loss" in e]
    assert losses == [e["loss"] for e in uninterrupted["log_history"] if "loss" in e]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(micro_world, tmp_path, capsys, one_thread):
    """GA at lr 1e4 diverges to NaN in the second epoch: one line, the epoch-1 checkpoint stays."""
    out = tmp_path / "out"
    code, err = run_cli(capsys, "run", "--method", "ga", "--model", micro_world.target_dir, "--data",
                        micro_world.data_dir, "--forget", "forget01", "--out", out, "--no-eval",
                        "--lr", "1e4", "--epochs", "5", "train.batch_size=2", "train.grad_accum=1",
                        "train.warmup_ratio=0")
    assert code == 2 and "Traceback" not in err, err
    line = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(line) == 1 and "training loss became nan" in line[0] and "lower the learning rate" in line[0]
    kept = tmp_path / "out.checkpoints" / "checkpoint-2"
    assert f"last good checkpoint is kept in {kept}" in line[0]
    assert (kept / CHECKPOINT_MARKER).is_file() and (kept / "model.safetensors").is_file()
    weights = load_file(kept / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert not out.exists() and not list(tmp_path.glob(".out.partial-*"))
