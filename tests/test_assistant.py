"""ULD assistant: first K layers of the target + LoRA, sharing the target's weights by reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from unlearnkit.errors import UnlearnError
from unlearnkit.methods.uld.assistant import build_assistant, default_num_layers
from unlearnkit.models.presets import build_preset

torch.set_num_threads(1)


@pytest.fixture()
def target(tok):
    return build_preset("llama-micro", tok, seed=0).eval()


def ids(n: int = 9, batch: int = 2, vocab: int = 30, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, vocab, (batch, n), generator=g)


def randomise_lora(assistant, seed: int = 1) -> None:
    """LoRA B starts at zero (the adapter is a no-op); give it values so the adapter matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in assistant.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def test_default_num_layers():
    assert [default_num_layers(n) for n in (1, 2, 4, 8, 30, 32)] == [1, 1, 1, 2, 8, 8]


def test_weights_shared_not_copied(target):
    k = 2
    assistant = build_assistant(target, k)
    shell = assistant.get_base_model()
    assert shell.model.embed_tokens.weight is target.model.embed_tokens.weight
    assert shell.model.norm.weight.data_ptr() == target.model.norm.weight.data_ptr()
    assert shell.lm_head.weight.data_ptr() == target.lm_head.weight.data_ptr()
    for i in range(k):
        for name, p in target.model.layers[i].named_parameters():
            q = dict(shell.model.layers[i].named_parameters())
            base_name = name.replace(".weight", ".base_layer.weight") if name not in q else name
            assert q[base_name].data_ptr() == p.data_ptr(), name
    # Every non-LoRA tensor of the assistant is one of the target's: no copies at all.
    target_ptrs = {p.data_ptr() for p in target.parameters()} | {b.data_ptr() for b in target.buffers()}
    own = [n for n, p in assistant.named_parameters() if p.data_ptr() not in target_ptrs]
    assert own and all("lora_" in n for n in own)
    assert len(shell.model.layers) == k


def test_target_untouched(target):
    x = ids()
    with torch.no_grad():
        before = target(x).logits
    assistant = build_assistant(target, 2)
    randomise_lora(assistant)
    assert all(type(m) is nn.Linear for m in target.model.layers.modules() if isinstance(m, nn.Linear))
    assert not any("lora" in n for n, _ in target.named_modules())
    with torch.no_grad():
        assert torch.equal(target(x).logits, before)
        assert not torch.allclose(assistant(input_ids=x).logits, before)


def test_assistant_is_target_truncated(target):
    """With a zero adapter, the assistant = norm + LM head applied to the target's layer-K hidden state."""
    x = ids()
    for k in (1, 3, 4):
        assistant = build_assistant(target, k)
        with torch.no_grad():
            hidden = target(x, output_hidden_states=True).hidden_states[k]
            expected = target.lm_head(target.model.norm(hidden)) if k < 4 else target(x).logits
            got = assistant(input_ids=x).logits
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_only_lora_gets_gradients(target):
    assistant = build_assistant(target, 2, {"r": 4, "alpha": 8, "dropout": 0.0})
    randomise_lora(assistant)
    trainable = [n for n, p in assistant.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert assistant.get_base_model().model.layers[0].self_attn.q_proj.lora_A["default"].weight.shape[0] == 4
    x = ids()
    logits = assistant(input_ids=x).logits
    F.cross_entropy(logits[:, :-1].flatten(0, 1), x[:, 1:].flatten()).backward()
    assert all(p.grad is None for p in target.parameters())
    grads = [p.grad for n, p in assistant.named_parameters() if "lora_B" in n]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_out_of_range_and_bad_lora_settings(target):
    with pytest.raises(UnlearnError, match="N=4"):
        build_assistant(target, 5)
    with pytest.raises(UnlearnError, match="N=4"):
        build_assistant(target, 0)
    with pytest.raises(UnlearnError, match="rank"):
        build_assistant(target, 1, {"rank": 8})


def test_unsupported_architecture_is_a_clear_error():
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=32, n_layer=2, n_head=2, n_positions=32))
    with pytest.raises(UnlearnError, match="layers"):
        build_assistant(gpt2, 1)


@pytest.mark.parametrize("family", ["qwen2", "mistral"])
def test_other_architectures(family):
    common = dict(vocab_size=60, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    if family == "qwen2":
        target = Qwen2ForCausalLM(Qwen2Config(**common)).eval()
    else:
        target = MistralForCausalLM(MistralConfig(sliding_window=8, **common)).eval()
    x = ids(n=12)
    with torch.no_grad():
        before = target(x).logits
        hidden = target(x, output_hidden_states=True).hidden_states[1]
        expected = target.lm_head(target.model.norm(hidden))
    assistant = build_assistant(target)  # K = round(4/4) = 1
    assert len(assistant.get_base_model().model.layers) == 1
    with torch.no_grad():
        torch.testing.assert_close(assistant(input_ids=x).logits, expected, rtol=0, atol=1e-5)
    randomise_lora(assistant)
    with torch.no_grad():
        assert torch.equal(target(x).logits, before)
    if family == "qwen2":  # biased q/k/v projections are shared too
        q = target.model.layers[0].self_attn.q_proj
        assert assistant.get_base_model().model.layers[0].self_attn.q_proj.base_layer.bias is q.bias
