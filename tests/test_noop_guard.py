"""A training run that changes no weight ends with a one-line error (exit 2, no output), unless allowed.

The exact case a new user hits: `unlearn run --method gd --epochs 1` on the micro world's forget10 (12
rows at batch 8 x accumulation 4 = one optimizer step, which warmup 0.1 runs at learning rate 0).
"""

from __future__ import annotations

import pytest
import torch
from helpers import run_cli
from safetensors.torch import load_file

from unlearnkit.errors import UnlearnError


def _run_args(world, out, method: str, *extra, epochs: int = 1):
    return ["run", "--method", method, "--model", world.target_dir, "--data", world.data_dir,
            "--forget", "forget10", "--epochs", str(epochs), "--out", out, "--no-eval", *extra]


@pytest.mark.parametrize(("method", "rows"), [("gd", 12), ("uld", 12)])  # ULD without an augment file: Df
def test_one_epoch_at_learning_rate_zero_is_an_error_and_leaves_nothing(micro_world, tmp_path, capsys,
                                                                        method, rows):
    out = tmp_path / "run"
    code, err = run_cli(capsys, *_run_args(micro_world, out, method))
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err
    assert "applied no update" in lines[0] and "1 optimizer step(s) all ran at learning rate 0" in lines[0]
    assert f"{rows} training rows at batch 8 x accumulation 4, 1 epoch(s)" in lines[0]
    assert "raise the epochs" in lines[0] and "train.allow_no_update=true" in lines[0]
    assert not out.exists() and not (tmp_path / "run.checkpoints").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_allow_no_update_saves_the_unchanged_model_for_a_baseline(micro_world, tmp_path, capsys):
    out = tmp_path / "run"
    code, err = run_cli(capsys, *_run_args(micro_world, out, "gd", "train.allow_no_update=true"))
    assert code == 0, err
    saved, target = (load_file(str(d / "model.safetensors")) for d in (out / "model", micro_world.target_dir))
    assert saved.keys() == target.keys() and all(torch.equal(saved[k], target[k]) for k in saved)
    assert not (tmp_path / "run.checkpoints").exists()


def test_two_epochs_train_and_pass_the_guard(micro_world, tmp_path, capsys):
    out = tmp_path / "run"
    code, err = run_cli(capsys, *_run_args(micro_world, out, "gd", epochs=2))
    assert code == 0, err
    saved, target = (load_file(str(d / "model.safetensors")) for d in (out / "model", micro_world.target_dir))
    assert any(not torch.equal(saved[k], target[k]) for k in saved)


def test_finetune_single_warmup_step_is_an_error_unless_allowed(micro_world, micro_tok, micro_model):
    from unlearnkit.data.tofu import load_split
    from unlearnkit.finetune import finetune, finetune_settings

    tok = micro_tok
    rows = load_split(micro_world.data_dir, "forget10")
    cfg = finetune_settings(epochs=1, batch_size=16, warmup=0.05)  # 12 rows: one step, warmup -> lr 0

    def model():
        return micro_model("base")

    with pytest.raises(UnlearnError, match=r"all ran at learning rate 0 .*--allow-no-update"):
        finetune(model(), tok, rows, cfg, progress=False)
    assert finetune(model(), tok, rows, cfg, progress=False, allow_no_update=True).steps == 1
    assert finetune(model(), tok, rows, finetune_settings(epochs=1, batch_size=16, warmup=0),
                    progress=False).steps == 1
