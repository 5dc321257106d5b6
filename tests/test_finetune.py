"""Fine-tuning memorises a small QA set, saves a model that reloads exactly, and works with LoRA/CLI."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from unlearnkit.data.tofu import load_split
from unlearnkit.finetune import answer_loss, finetune, finetune_settings
from unlearnkit.models.presets import build_preset


@pytest.fixture(scope="module")
def micro(micro_world, micro_tok):
    return micro_tok, load_split(micro_world.data_dir, "full")


def test_finetune_50_items_below_half_nat_and_reload_is_exact(micro, tmp_path):
    tok, full = micro
    records = full[:50]
    model = build_preset("llama-micro", tok, seed=0)
    before = answer_loss(model, tok, records)
    cfg = finetune_settings(epochs=40, lr=5e-3, batch_size=10, max_length=64, seed=0)
    res = finetune(model, tok, records, cfg, out_dir=tmp_path / "m", progress=False)
    after = answer_loss(model, tok, records)
    assert before > 5.0 and after < 0.5
    assert res.steps == 200 and len(res.losses) == 200 and res.n_examples == 50
    assert res.final_loss < res.losses[0] / 5

    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "m", use_safetensors=True)
    assert list((tmp_path / "m").glob("*.safetensors")) and not (tmp_path / "m.tmp").exists()
    batch = tok([r["question"] for r in records[:4]], return_tensors="pt", padding=True)
    with torch.no_grad():
        a = model(**batch).logits
        b = reloaded(**batch).logits
    assert torch.equal(a, b)
    info = json.loads((tmp_path / "m" / "finetune.json").read_text())
    assert info["config"]["lr"] == 5e-3 and info["finetune"]["steps"] == 200


def test_same_seed_same_weights(micro):
    tok, full = micro
    cfg = finetune_settings(epochs=2, lr=3e-3, batch_size=8, max_length=64, seed=5)
    states = []
    for _ in range(2):
        model = build_preset("llama-micro", tok, seed=1)
        finetune(model, tok, full[:24], cfg, progress=False)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_lora_trains_adapters_and_saves_a_merged_plain_model(micro_world, micro_tok, micro_model, tmp_path):
    tok = micro_tok
    records = load_split(micro_world.data_dir, "forget10")  # unknown to the base model
    model = micro_model("base")
    start = {k: v.clone() for k, v in model.state_dict().items()}
    before = answer_loss(model, tok, records)
    cfg = finetune_settings(epochs=20, lr=1e-2, batch_size=6, max_length=64, lora={"r": 8, "lora_alpha": 16})
    finetune(model, tok, records, cfg, out_dir=tmp_path / "lora", progress=False)
    assert not list((tmp_path / "lora").glob("adapter_*"))
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "lora", use_safetensors=True)
    state = reloaded.state_dict()
    assert state.keys() == start.keys()  # merged: no lora_A/lora_B left
    assert torch.equal(state["model.embed_tokens.weight"], start["model.embed_tokens.weight"])
    assert not torch.equal(state["model.layers.0.self_attn.q_proj.weight"],
                           start["model.layers.0.self_attn.q_proj.weight"])
    assert answer_loss(reloaded, tok, records) < before - 1.0


def test_cli_finetune_writes_a_loadable_model_and_refuses_to_overwrite(micro_world, tmp_path):
    from typer.testing import CliRunner

    from unlearnkit.cli import app
    from unlearnkit.errors import UnlearnError

    out = tmp_path / "cli"
    args = ["finetune", "--model", "llama-micro", "--tokenizer", str(micro_world.tokenizer_dir),
            "--data", str(micro_world.data_dir), "--split", "forget10", "--out", str(out),
            "--epochs", "1", "--lr", "1e-3", "--batch-size", "4", "--max-length", "64"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    info = json.loads((out / "finetune.json").read_text())
    assert info["finetune"]["n_examples"] == 12 and info["finetune"]["steps"] == 3
    AutoModelForCausalLM.from_pretrained(out, use_safetensors=True)
    again = CliRunner().invoke(app, args)
    assert isinstance(again.exception, UnlearnError) and "--overwrite" in str(again.exception)
    assert CliRunner().invoke(app, [*args, "--overwrite"]).exit_code == 0
