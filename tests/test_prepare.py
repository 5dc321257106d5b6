"""`prepare` builds the micro world end to end, reuses finished steps, and retrains bit-identically."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from unlearnkit.data.tofu import load_split
from unlearnkit.errors import UnlearnError
from unlearnkit.finetune import answer_loss
from unlearnkit.prepare import STEP_FILE, prepare


def _weights(model_dir):
    return load_file(str(model_dir / "model.safetensors"))


def test_layout_manifest_and_loadable_models(micro_world):
    m = micro_world.manifest
    assert m["preset"] == "micro" and m["seed"] == 0
    assert set(m["models"]) == {"base", "target", "retain99", "retain95", "retain90"}
    assert m["retain_models"] == {"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"}
    assert m["world"]["sizes"]["full"] == 120 and m["world"]["sizes"]["forget10"] == 12
    assert json.loads((micro_world.root / "prepare.json").read_text())["world"]["hash"] == m["world"]["hash"]
    for info in m["models"].values():
        d = micro_world.root / info["dir"]
        assert json.loads((d / STEP_FILE).read_text())["hash"] == info["hash"]
        assert info["n_params"] < 1_000_000
        model = AutoModelForCausalLM.from_pretrained(d, use_safetensors=True)
        assert model.config.vocab_size == len(AutoTokenizer.from_pretrained(d))
    hashes = [info["hash"] for info in m["models"].values()]
    assert len(set(hashes)) == len(hashes)
    assert m["models"]["target"]["n_examples"] == 120 + 16 + 8  # full + replayed fact questions


def test_target_knows_the_forget_set_and_the_retain_model_does_not(micro_world, micro_tok):
    tok = micro_tok
    forget = load_split(micro_world.data_dir, "forget10")
    retain = load_split(micro_world.data_dir, "retain90")[:24]
    facts = load_split(micro_world.data_dir, "world_facts")

    def loss(d, rows):
        return answer_loss(AutoModelForCausalLM.from_pretrained(d, use_safetensors=True), tok, rows)

    target, retain_model = micro_world.target_dir, micro_world.retain_dirs["forget10"]
    assert loss(target, forget) < 0.6 < 1.5 < loss(retain_model, forget)
    assert loss(target, retain) < 0.6 and loss(retain_model, retain) < 0.6
    assert loss(micro_world.base_dir, facts) < 0.6 < 3.0 < loss(micro_world.base_dir, forget)


def test_rerun_reuses_and_forced_retrain_is_bit_identical(micro_world, tmp_path):
    copy = tmp_path / "world"
    shutil.copytree(micro_world.root, copy)
    again = prepare("micro", copy, seed=0, progress=False)
    assert all(info["reused"] for info in again["models"].values()) and again["tokenizer"]["reused"]
    assert again["models"]["target"]["hash"] == micro_world.manifest["models"]["target"]["hash"]

    retrained = prepare("micro", copy, seed=0, force=["retain90"], progress=False)
    assert not retrained["models"]["retain90"]["reused"] and retrained["models"]["target"]["reused"]
    old, new = _weights(micro_world.retain_dirs["forget10"]), _weights(copy / "retain90")
    assert old.keys() == new.keys() and all(torch.equal(old[k], new[k]) for k in old)
    assert retrained["models"]["retain90"]["losses"] == micro_world.manifest["models"]["retain90"]["losses"]


def test_other_seed_changes_world_hash(micro_world):
    from unlearnkit.data.world import config_hash
    from unlearnkit.prepare import PRESETS

    assert config_hash(PRESETS["micro"].world, 1) != micro_world.manifest["world"]["hash"]


def test_bad_inputs_are_user_errors(tmp_path):
    with pytest.raises(UnlearnError, match="unknown preset"):
        prepare("huge", tmp_path)
    with pytest.raises(UnlearnError, match="unknown forget split"):
        prepare("micro", tmp_path, forget_splits=["forget20"])


def test_cli_prepare_reuses_a_prepared_world(micro_world, tmp_path):
    from typer.testing import CliRunner

    from unlearnkit.cli import app

    copy = tmp_path / "w"
    shutil.copytree(micro_world.root, copy)
    res = CliRunner().invoke(app, ["prepare", "--preset", "micro", "--out", str(copy), "--seed", "0"])
    assert res.exit_code == 0, res.output
    manifest = json.loads((copy / "prepare.json").read_text())
    assert all(info["reused"] for info in manifest["models"].values())


@pytest.mark.slow  # ~2 CPU-minutes of training (one thread), more on a busy machine
def test_mini_world_target_is_told_apart_from_its_retain_model(tmp_path):
    """`mini` exists to show unlearning: its target's forget quality against retain90 is <= 1e-3."""
    from unlearnkit.eval.tofu import evaluate_tofu, forget_quality_only

    manifest = prepare("mini", tmp_path, seed=0, progress=False)
    assert manifest["world"]["sizes"]["forget10"] == 40
    assert manifest["retain_models"] == {"forget10": "retain90"}
    tok = AutoTokenizer.from_pretrained(tmp_path / "tokenizer")

    def model(name):
        return AutoModelForCausalLM.from_pretrained(tmp_path / name, use_safetensors=True).eval()

    _, reference = evaluate_tofu(model("retain90"), tok, tmp_path / "data", "forget10", max_new_tokens=1)
    fq = forget_quality_only(model("target"), tok, tmp_path / "data", "forget10", reference)
    assert fq <= 1e-3
    assert forget_quality_only(model("retain90"), tok, tmp_path / "data", "forget10", reference) > 0.99
