"""Where things are in a decoder-only HF model: its stack of decoder layers, and the keyword the
installed transformers uses for the KV cache."""

from __future__ import annotations

from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from unlearnkit.errors import UnlearnError

# transformers 5.24 renamed the KV-cache argument and output field `past_key_values` -> `cache`
# (the old name warns until 5.40); generate() passes and reorders the cache only under the new name.
CACHE_KEY = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def decoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    """The `model.layers` stack of a decoder-only HF model, or a clear error when it has none."""
    base = getattr(model, model.base_model_prefix, None) if model.base_model_prefix else None
    layers = getattr(base, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        prefix = model.base_model_prefix or "model"
        raise UnlearnError(f"ULD and RMU need a decoder-only model with a `{prefix}.layers` stack (Llama, "
                           f"Mistral, Qwen2, Phi-3, ...); {type(model).__name__} has none: use a supported "
                           "model")
    return layers
