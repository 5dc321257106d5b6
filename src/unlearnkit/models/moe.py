"""Tiny mixture-of-experts presets and the expert-level plumbing UOE needs.

Presets are built from transformers' own MoE classes (Qwen2-MoE with a shared expert, Mixtral and OLMoE
without). In transformers 5 the routed experts of a layer are one fused tensor pair
(`experts.gate_up_proj` (E, 2I, H), `experts.down_proj` (E, H, I)) and the router is `mlp.gate` with a
weight (E, H), so "train one expert" is a gradient mask on slice e, not `requires_grad` on a module.
The affinity that picks the expert lives here (not in eval/) because training needs it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from unlearnkit.errors import UnlearnError

# name -> (model_type, config kwargs); vocab size and special ids come from the tokenizer.
_SHARED = dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
               max_position_embeddings=256, num_experts_per_tok=2, tie_word_embeddings=True)
MOE_PRESETS: dict[str, tuple[str, dict]] = {
    # ~2.3M params with a 2k vocab: 8 routed experts (top-2) + one shared expert per layer.
    "qwen2moe-tiny": ("qwen2_moe", dict(_SHARED, num_experts=8, moe_intermediate_size=128,
                                        shared_expert_intermediate_size=256, intermediate_size=256,
                                        decoder_sparse_step=1, norm_topk_prob=False, qkv_bias=True,
                                        router_aux_loss_coef=0.01)),
    # ~2.1M params: 8 routed experts (top-2), no shared expert.
    "mixtral-tiny": ("mixtral", dict(_SHARED, num_local_experts=8, intermediate_size=160,
                                     router_aux_loss_coef=0.01)),
    # ~2.1M params: OLMoE style (q/k norm, unnormalised top-k), no shared expert.
    "olmoe-tiny": ("olmoe", dict(_SHARED, num_experts=8, intermediate_size=160,
                                 router_aux_loss_coef=0.01)),
}
# Eager loops over the experts hit; measured faster than batched_mm on CPU (docs/design.md §11).
EXPERTS_IMPL = "eager"


def moe_config(name: str, vocab_size: int, bos_token_id: int | None = None,
               eos_token_id: int | None = None, pad_token_id: int | None = None):
    """The transformers config of a tiny MoE preset, sized to a tokenizer's vocabulary."""
    from transformers import AutoConfig

    if name not in MOE_PRESETS:
        raise UnlearnError(f"unknown MoE preset {name!r}: choose one of {', '.join(MOE_PRESETS)}")
    model_type, kwargs = MOE_PRESETS[name]
    return AutoConfig.for_model(model_type, vocab_size=vocab_size, bos_token_id=bos_token_id,
                                eos_token_id=eos_token_id, pad_token_id=pad_token_id, rms_norm_eps=1e-5,
                                experts_implementation=EXPERTS_IMPL, **kwargs)


def build_moe_preset(name: str, tokenizer, seed: int = 0) -> nn.Module:
    """A randomly initialised tiny MoE causal LM for a tokenizer; the seed fixes the weights."""
    from transformers import AutoModelForCausalLM

    config = moe_config(name, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id,
                        tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    set_eager_experts(model)
    return model


def set_eager_experts(model: nn.Module) -> nn.Module:
    """Use the eager experts loop (grouped/batched kernels are slower or unavailable on CPU)."""
    if hasattr(model, "set_experts_implementation") and getattr(model.config, "_experts_implementation",
                                                               None) not in (None, EXPERTS_IMPL):
        model.set_experts_implementation(EXPERTS_IMPL)
    return model


# ---------------------------------------------------------------- finding routers and experts

@dataclass
class MoeLayer:
    """One sparse MoE block: its decoder-layer index, router, routed experts, and top-k."""

    index: int
    name: str
    block: nn.Module

    @property
    def router(self) -> nn.Module:
        return self.block.gate

    @property
    def experts(self) -> nn.Module:
        return self.block.experts

    @property
    def num_experts(self) -> int:
        return self.block.gate.weight.shape[0]

    @property
    def top_k(self) -> int:
        gate = self.block.gate
        return int(getattr(gate, "top_k", None) or self.block.top_k)

    def expert_params(self, expert: int) -> list[tuple[str, nn.Parameter, torch.Tensor | None]]:
        """(name, parameter, mask) for expert `expert`: mask is a 0/1 tensor for fused tensors, None
        when the parameter belongs to that expert alone (per-expert module lists)."""
        experts = self.experts
        if isinstance(experts, nn.ModuleList):
            return [(f"{self.name}.experts.{expert}.{n}", p, None)
                    for n, p in experts[expert].named_parameters()]
        out = []
        for n, p in experts.named_parameters(recurse=False):
            if p.dim() < 1 or p.shape[0] != self.num_experts:
                continue
            mask = torch.zeros_like(p, dtype=p.dtype)
            mask[expert] = 1
            out.append((f"{self.name}.experts.{n}", p, mask))
        if not out:
            raise UnlearnError(f"cannot find the expert weights of {self.name}: unsupported MoE layout")
        return out


def _find_moe_layers(model: nn.Module) -> list[MoeLayer]:
    """Every module with a `gate` router (2-D weight) and `experts`, in layer order; [] for a dense model."""
    found = []
    for name, module in model.named_modules():
        gate, experts = getattr(module, "gate", None), getattr(module, "experts", None)
        weight = getattr(gate, "weight", None)
        if gate is None or experts is None or not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            continue
        match = re.search(r"layers\.(\d+)\.", name + ".")
        found.append(MoeLayer(int(match.group(1)) if match else len(found), name, module))
    return sorted(found, key=lambda m: m.index)


def moe_layers(model: nn.Module) -> list[MoeLayer]:
    """Every sparse MoE block (a module with a `gate` router and `experts`), in layer order.

    Shared experts are not part of `experts` in transformers' layouts, so they are never candidates.
    A dense model has none: that is a user error for UOE, reported as such.
    """
    found = _find_moe_layers(model)
    if not found:
        kind = type(model).__name__
        raise UnlearnError(f"{kind} is a dense model (no mixture-of-experts layers): UOE needs an MoE model "
                           "such as Qwen2-MoE, Mixtral or OLMoE (see `unlearn prepare --preset moe`)")
    return found


def is_moe(model: nn.Module) -> bool:
    """True when the model has sparse MoE blocks (what routing diagnostics need)."""
    return bool(_find_moe_layers(model))


def get_layer(model: nn.Module, index: int) -> MoeLayer:
    layers = {m.index: m for m in moe_layers(model)}
    if index not in layers:
        raise UnlearnError(f"layer {index} has no MoE block: MoE layers are {sorted(layers)}")
    return layers[index]


# ---------------------------------------------------------------- router logits and affinity

class RouterCapture:
    """Forward hooks on every router that keep its logits (tokens, E) per layer index.

    Hooks rather than `output_router_logits` because they map logits to layer indices directly, work
    for any block with a `gate`, and keep the graph when the anchor loss needs gradients.
    """

    def __init__(self, model: nn.Module, layers: Iterable[int] | None = None, detach: bool = True):
        self.layers = [m for m in moe_layers(model) if layers is None or m.index in set(layers)]
        self.detach = detach
        self.logits: dict[int, torch.Tensor] = {}
        self._handles = []

    def __enter__(self) -> RouterCapture:
        for layer in self.layers:
            self._handles.append(layer.router.register_forward_hook(self._hook(layer.index)))
        return self

    def _hook(self, index: int):
        def hook(module, args, output):
            logits = output[0] if isinstance(output, tuple) else output
            self.logits[index] = logits.detach() if self.detach else logits
        return hook

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def topk_gate_probs(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """g̃: softmax gate probabilities (fp32), kept where the expert is in the token's top-k, else 0."""
    probs = torch.softmax(logits.float(), dim=-1)
    top = probs.topk(top_k, dim=-1).indices
    keep = torch.zeros_like(probs, dtype=torch.bool).scatter_(-1, top, True)
    return probs * keep


def sequence_affinity(gated: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Per-sequence mean over real tokens of g̃: (B*T, E) and (B, T) -> (B, E)."""
    batch, length = attention_mask.shape
    gated = gated.view(batch, length, -1)
    mask = attention_mask.to(gated.dtype).unsqueeze(-1)
    return (gated * mask).sum(1) / mask.sum(1).clamp(min=1)


@torch.no_grad()
def router_passes(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]]):
    """Eval-mode forwards over `batches`, yielding (router logits by layer index, attention mask) per
    batch; the model's train/eval mode is restored afterwards (also when the caller stops early)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        with RouterCapture(model) as cap:
            for batch in batches:
                mask = batch["attention_mask"].to(device)
                model(input_ids=batch["input_ids"].to(device), attention_mask=mask, use_cache=False)
                yield cap.logits, mask
    finally:
        model.train(was_training)


def expert_affinity(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]]) -> torch.Tensor:
    """s(l, e) = mean over sequences of the mean over tokens of g̃(l, e, t) (docs/design.md §5).

    Returns (number of MoE layers, E) in `moe_layers` order; padding is excluded via attention_mask.
    """
    layers = moe_layers(model)
    totals, count = None, 0
    for logits, mask in router_passes(model, batches):
        rows = torch.stack([sequence_affinity(topk_gate_probs(logits[m.index], m.top_k), mask)
                            for m in layers])  # (L, B, E)
        totals = rows.sum(1) if totals is None else totals + rows.sum(1)
        count += mask.shape[0]
    if not count:
        raise UnlearnError("no forget sequences to compute expert affinity on: give a non-empty forget set")
    return totals / count


SELECTIONS = ("affinity", "contrast")


def selection_scores(forget_affinity: torch.Tensor, retain_affinity: torch.Tensor | None = None,
                     selection: str = "affinity") -> torch.Tensor:
    """The score UOE ranks experts by: the forget affinity (the paper), or forget minus retain affinity
    ("contrast"), which prefers an expert the forget data uses *more than* the rest of the data does.

    The paper's rule can pick a generic expert that every domain routes to (on the `moe` target the
    top-affinity expert has a higher affinity on retain than on forget tokens); unlearning it then
    hurts everything it serves.
    """
    if selection == "affinity":
        return forget_affinity
    if selection == "contrast":
        if retain_affinity is None:
            raise UnlearnError('selection="contrast" needs retain data to contrast the forget affinity with')
        return forget_affinity - retain_affinity
    raise UnlearnError(f"unknown expert selection {selection!r}: use one of {', '.join(SELECTIONS)}")


def only_layers(scores: torch.Tensor, layer_indices: list[int],
                candidates: Iterable[int] | None) -> torch.Tensor:
    """Scores with every layer outside `candidates` set to -inf (None = keep all), so selection and
    ranking skip them; e.g. a first-layer expert routes by token identity and serves every domain."""
    if candidates is None:
        return scores
    candidates = [int(c) for c in candidates]
    missing = sorted(set(candidates) - set(layer_indices))
    if missing or not candidates:
        raise UnlearnError(f"candidate layers {missing or candidates} are not MoE layers: MoE layers are "
                           f"{layer_indices}")
    keep = torch.tensor([i in candidates for i in layer_indices]).unsqueeze(1)
    return scores.masked_fill(~keep, float("-inf"))


def select_expert(affinity: torch.Tensor, layer_indices: list[int]) -> tuple[int, int]:
    """(layer index, expert) with the highest affinity."""
    flat = int(affinity.argmax())
    return layer_indices[flat // affinity.shape[1]], flat % affinity.shape[1]


def expert_ranking(affinity: torch.Tensor, layer_indices: list[int]) -> list[tuple[int, int, float]]:
    """All (layer, expert, affinity), highest first (layers masked out with -inf are left out)."""
    flat = affinity.flatten()
    order = flat.argsort(descending=True).tolist()
    width = affinity.shape[1]
    return [(layer_indices[i // width], i % width, float(flat[i])) for i in order if flat[i] > float("-inf")]


def anchor_loss(router_logits: torch.Tensor, expert: int,
                token_mask: torch.Tensor | None = None) -> torch.Tensor:
    """A = mean over (real) tokens of ‖softmax(router logits) − onehot(e*)‖², in fp32 (docs/design.md §5).

    Keeps the forget tokens routed to the expert being unlearned, so the forget loss cannot be
    lowered by routing around it.
    """
    probs = torch.softmax(router_logits.float(), dim=-1)
    target = torch.zeros_like(probs)
    target[:, expert] = 1.0
    per_token = ((probs - target) ** 2).sum(-1)
    if token_mask is None:
        return per_token.mean()
    mask = token_mask.reshape(-1).to(per_token.dtype)
    return (per_token * mask).sum() / mask.sum().clamp(min=1)


# ---------------------------------------------------------------- training one expert

@dataclass
class ExpertRestriction:
    """What `restrict_to_expert` did: trainable tensors, masked ones, effective trainable count."""

    layer: int
    expert: int
    trainable_names: list[str]
    masked_names: list[str]
    trainable_params: int  # the expert's slice + the router, not whole fused tensors
    total_params: int
    handles: list

    @property
    def share(self) -> float:
        return self.trainable_params / self.total_params

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def restrict_to_expert(model: nn.Module, layer: int, expert: int,
                       train_router: bool = True) -> ExpertRestriction:
    """Freeze everything except expert `expert` of MoE layer `layer` and (unless `train_router` is
    False) that layer's router.

    Fused expert tensors stay trainable as a whole but their gradient is masked to slice `expert`;
    the optimizer must not apply weight decay to them (see `masked_names`), else the other experts
    would still move.
    """
    target = get_layer(model, layer)
    if not 0 <= expert < target.num_experts:
        raise UnlearnError(f"expert {expert} does not exist: layer {layer} has {target.num_experts} experts")
    for p in model.parameters():
        p.requires_grad_(False)
    names = {id(p): n for n, p in model.named_parameters()}
    trainable, masked, handles, count = [], [], [], 0
    for _, p, mask in target.expert_params(expert):
        p.requires_grad_(True)
        trainable.append(names[id(p)])
        if mask is not None:
            masked.append(names[id(p)])
            handles.append(p.register_hook(lambda g, m=mask: g * m.to(g.device, g.dtype)))
            count += int(mask.sum())
        else:
            count += p.numel()
    if train_router:
        router_weight = target.router.weight
        router_weight.requires_grad_(True)
        trainable.append(names[id(router_weight)])
        count += router_weight.numel()
    total = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    return ExpertRestriction(layer, expert, trainable, masked, count, total, handles)
