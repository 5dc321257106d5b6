"""The device policy (models.device): CUDA, then MPS, else CPU; --device/--dtype overrides; recorded."""

from __future__ import annotations

import json

import pytest
import torch

from unlearnkit.errors import UnlearnError
from unlearnkit.models.device import Placement, pick_device, pick_dtype


@pytest.fixture()
def no_accelerator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_cpu_and_fp32_when_there_is_no_accelerator(no_accelerator):
    p = Placement.resolve()
    assert (p.device, p.dtype, p.torch_dtype, p.loader_dtype) == (torch.device("cpu"), "fp32", torch.float32,
                                                                   "float32")
    assert p.record() == {"device": "cpu", "dtype": "fp32"}


def test_cuda_first_with_bf16_when_supported(no_accelerator, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)  # CUDA still wins
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert pick_device() == torch.device("cuda") and pick_dtype(None, torch.device("cuda")) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert pick_dtype(None, torch.device("cuda")) == "fp32"  # e.g. a T4: fp32, not a silent fp16
    with pytest.raises(UnlearnError, match="no bf16 support"):
        pick_dtype("bf16", torch.device("cuda"))
    assert pick_dtype("fp16", torch.device("cuda")) == "fp16"
    assert Placement.resolve("cpu").device == torch.device("cpu")  # --device overrides the policy
    assert Placement.resolve("cpu").dtype == "fp32"


def test_mps_when_no_cuda(no_accelerator, monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    p = Placement.resolve()
    assert (p.device.type, p.dtype) == ("mps", "fp32")


def test_requested_devices_and_dtypes_are_checked(no_accelerator):
    with pytest.raises(UnlearnError, match="no CUDA device"):
        pick_device("cuda")
    with pytest.raises(UnlearnError, match="MPS is not available"):
        pick_device("mps")
    with pytest.raises(UnlearnError, match="unknown device"):
        pick_device("gpu0")
    with pytest.raises(UnlearnError, match="unknown --dtype"):
        Placement.resolve("cpu", "float8")
    assert Placement.resolve("cpu", "bf16").torch_dtype == torch.bfloat16


def test_apply_casts_a_uld_model_and_keeps_weights_shared(micro_world):
    from unlearnkit.methods.uld.assistant import build_assistant
    from unlearnkit.methods.uld.model import ULDModel
    from unlearnkit.models.loading import load_model_and_tokenizer

    target, _ = load_model_and_tokenizer(micro_world.target_dir)
    uld = Placement.resolve("cpu", "bf16").apply(ULDModel.from_target(target, build_assistant(target, 1)))
    assert {p.dtype for p in uld.parameters()} == {torch.bfloat16}
    shared = uld.assistant.get_input_embeddings().weight
    assert shared.data_ptr() == uld.target.get_input_embeddings().weight.data_ptr()


def test_eval_records_the_placement(micro_world, tmp_path):
    from typer.testing import CliRunner

    from unlearnkit.cli import app

    out = tmp_path / "ev"
    args = ["eval", "--model", str(micro_world.target_dir), "--data", str(micro_world.data_dir),
            "--out", str(out), "--max-new-tokens", "2", "--max-samples", "2", "--device", "cpu",
            "--dtype", "bf16"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "eval_meta.json").read_text())
    assert (meta["device"], meta["dtype"]) == ("cpu", "bf16")
    bad_args = [str(tmp_path / "ev2") if a == str(out) else a for a in args[:-1]]
    bad = CliRunner().invoke(app, [*bad_args, "fp8"])
    assert isinstance(bad.exception, UnlearnError) and "fp8" in str(bad.exception)
