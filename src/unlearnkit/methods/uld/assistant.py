"""ULD assistant: the first K decoder layers of a target model plus LoRA, sharing the target's weights.

The assistant is a K-layer model of the target's own class whose embeddings, layers 0..K-1, final norm,
rotary embedding and LM head are the target's `nn.Parameter`/buffer objects (shared by reference, no
copy). peft then wraps only the assistant's own Linear modules, so the target's modules stay plain and
its forward is unchanged; memory is target + LoRA.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import asdict, dataclass

import torch
from torch import nn
from transformers import PreTrainedModel

from unlearnkit.errors import UnlearnError
from unlearnkit.methods.params import param
from unlearnkit.models.layers import decoder_layers


@dataclass
class LoraSettings:
    """LoRA hyper-parameters of the assistant (docs/design.md §4 defaults; the ULD paper used r=32)."""

    r: int = param(16, "LoRA rank of every Linear in the assistant's K layers")
    alpha: int = param(32, "LoRA scaling alpha (the update is scaled by alpha / r)")
    dropout: float = param(0.05, "dropout on the LoRA input")


def default_num_layers(n: int) -> int:
    """K = N/4 rounded, at least 1 (official ULD code: 8 of 32 layers for Llama-2-7B)."""
    return max(1, round(n / 4))


def _lora_settings(lora: LoraSettings | dict | None) -> LoraSettings:
    if lora is None:
        return LoraSettings()
    if isinstance(lora, LoraSettings):
        return lora
    unknown = set(lora) - set(asdict(LoraSettings()))
    if unknown:
        raise UnlearnError(f"unknown LoRA setting(s) {sorted(unknown)}: use r, alpha, dropout")
    r = int(lora.get("r", LoraSettings.r))
    # alpha defaults to 2r, as in methods.base.wrap_lora, so {"r": 8} keeps the usual scale alpha/r = 2
    dropout = lora.get("dropout", LoraSettings.dropout)
    return LoraSettings(r=r, alpha=lora.get("alpha", 2 * r), dropout=dropout)


def _truncated_config(config, k: int):
    """The target's config cut to K layers (per-layer lists such as Qwen2's layer_types cut too)."""
    config = copy.deepcopy(config)
    n = config.num_hidden_layers
    config.num_hidden_layers = k
    for name, value in list(vars(config).items()):
        if isinstance(value, list) and len(value) == n and name.endswith("layer_types"):
            setattr(config, name, value[:k])
    return config


def _share_weights(shell: nn.Module, target: nn.Module) -> None:
    """Point every parameter and buffer of the meta-device shell at the target's object of the same name."""
    target_params = dict(target.named_parameters(remove_duplicate=False))
    target_buffers = dict(target.named_buffers(remove_duplicate=False))
    for name, _ in list(shell.named_parameters(remove_duplicate=False)):
        owner, _, leaf = name.rpartition(".")
        shell.get_submodule(owner)._parameters[leaf] = target_params[name]
    for name, _ in list(shell.named_buffers(remove_duplicate=False)):
        owner, _, leaf = name.rpartition(".")
        shell.get_submodule(owner)._buffers[leaf] = target_buffers[name]
    # Plain tensor attributes created in __init__ (rare) would still be on meta: fail loudly, not later.
    for module_name, module in shell.named_modules():
        for attr, value in vars(module).items():
            if isinstance(value, torch.Tensor) and value.is_meta:
                raise UnlearnError(
                    f"cannot share {module_name}.{attr} with the target ({type(target).__name__}): "
                    "this architecture is not supported by the ULD assistant"
                )


def build_assistant(
    target: PreTrainedModel,
    num_layers: int | None = None,
    lora: LoraSettings | dict | None = None,
    seed: int = 0,
):
    """Assistant = target's embeddings + layers[:K] + norm + LM head (shared) with LoRA on those layers.

    Returns a peft `PeftModel`; only the LoRA parameters require grad. The target's parameters are
    frozen (they are shared with the assistant, and ULD never trains them); its forward is unchanged.
    `seed` fixes the LoRA initialisation (lora_A is random) without touching the global RNG.
    """
    from peft import LoraConfig, get_peft_model

    n = len(decoder_layers(target))
    k = default_num_layers(n) if num_layers is None else int(num_layers)
    if not 1 <= k <= n:
        raise UnlearnError(
            f"assistant num_layers={k} is out of range: the target has N={n} layers, use 1..{n}"
        )
    settings = _lora_settings(lora)

    config = _truncated_config(target.config, k)
    with torch.device("meta"):
        shell = type(target)(config)
    _share_weights(shell, target)
    shell.generation_config = copy.deepcopy(target.generation_config)
    shell.train(target.training)
    for p in target.parameters():
        p.requires_grad_(False)

    prefix = target.base_model_prefix
    lora_config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        # Every Linear of layers 0..K-1 (the only layers the shell has); never the LM head.
        target_modules=_linear_names(shell, prefix),
        bias="none",
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        # peft 0.21 calls a transformers-5 deprecated alias; not ours to fix
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        torch.manual_seed(seed)
        return get_peft_model(shell, lora_config)


def _linear_names(shell: nn.Module, prefix: str) -> list[str]:
    """Full names of the nn.Linear modules inside the shell's decoder layers."""
    return [
        name for name, module in shell.named_modules()
        if isinstance(module, nn.Linear) and name.startswith(f"{prefix}.layers.")
    ]
