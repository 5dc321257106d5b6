"""The `moe` preset of `unlearn prepare`: a multi-domain world and a tiny MoE target trained on it.

Steps: generate the world (facts per domain + held-out MCQs), train a byte-level BPE tokenizer on the
training text, pre-train a tiny transformers MoE (Qwen2-MoE with a shared expert, or Mixtral/OLMoE) on
every domain with the router load-balancing loss on, then measure MC accuracy per domain. Each step is
content-hashed and reused when its hash matches (prepare/steps.py).

Domain-routed pre-training (`domain_routing` > 0): a tiny MoE trained for minutes does not grow topic
experts by itself (measured: no expert above 0.44 of the forget domain's gate mass), while UOE's premise
is that a large pre-trained MoE has them. A cross-entropy term on every router, pulling each token of
domain d toward expert d (the DEMix idea, soft and weighted), gives the world that property.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import Trainer

from unlearnkit.data.moe_world import MoeWorldConfig, generate_moe_world, world_texts, write_moe_world
from unlearnkit.errors import UnlearnError
from unlearnkit.finetune import finetune, finetune_settings
from unlearnkit.models.moe import moe_layers
from unlearnkit.outputs import write_json
from unlearnkit.prepare.steps import Steps, pick_preset, step_hash


@dataclass(frozen=True)
class MoePreset:
    name: str
    world: MoeWorldConfig
    model: str = "qwen2moe-tiny"  # a models/moe.py preset
    vocab_size: int = 2000
    train: dict = field(default_factory=finetune_settings)
    mcq_mode: str = "option"
    mcq_norm: str = "mean"
    domain_routing: float = 0.0  # weight of the router cross-entropy toward the domain's expert


_MOE_TRAIN = finetune_settings(epochs=25, lr=3e-3, batch_size=32, max_length=64, warmup=0.03)
MOE_PRESETS: dict[str, MoePreset] = {
    # Demo: 5 domains x 20 entities x 4 facts (80 MCQs each), 2.4M-param Qwen2-MoE (8 experts top-2 +
    # shared), domain-routed pre-training at weight 0.01 (docs/uoe.md: expert 0 of layers 1-3 gets
    # 0.81-0.86 of its gate mass from the forget domain; 0.44 at most without).
    "moe": MoePreset("moe", MoeWorldConfig(n_entities=20), "qwen2moe-tiny", train=_MOE_TRAIN,
                     domain_routing=0.01),
    # The same world and model without domain routing: experts are token-type experts, not topic experts.
    "moe-plain": MoePreset("moe-plain", MoeWorldConfig(n_entities=20), "qwen2moe-tiny", train=_MOE_TRAIN),
    # The same world on a Mixtral-style model (no shared expert).
    "moe-mixtral": MoePreset("moe-mixtral", MoeWorldConfig(n_entities=20), "mixtral-tiny", train=_MOE_TRAIN,
                             domain_routing=0.01),
    # Tests: a few entities, a few epochs (accuracy is not the point, the pipeline is).
    "moe-micro": MoePreset("moe-micro", MoeWorldConfig(n_entities=3), "qwen2moe-tiny", vocab_size=600,
                           train=finetune_settings(epochs=2, lr=3e-3, batch_size=16, max_length=64),
                           domain_routing=0.01),
}


def resolve_moe_preset(preset: str | MoePreset) -> MoePreset:
    return pick_preset(preset, MOE_PRESETS, "MoE ")


class DomainRoutingTrainer(Trainer):
    """Adds `weight` x the mean over MoE layers of CE(router logits, expert d) on every attended token
    of a domain-d record, so expert d of each layer becomes domain d's expert."""

    def __init__(self, *args, weight: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.weight = weight

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        domain = inputs.pop("domain_id")
        loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
        routing = domain_routing_loss(outputs.router_logits, domain, inputs["attention_mask"])
        loss = loss + self.weight * routing
        return (loss, outputs) if return_outputs else loss


def domain_routing_loss(router_logits: tuple[torch.Tensor, ...], domain: torch.Tensor,
                        attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean over layers of the router cross-entropy toward expert `domain[b]` on the attended tokens;
    router logits are (B*T, E) per layer, as transformers' MoE models return them."""
    keep = attention_mask.flatten().bool()
    target = domain[:, None].expand_as(attention_mask).flatten()[keep]
    return torch.stack([F.cross_entropy(logits[keep].float(), target) for logits in router_logits]).mean()


def train_moe_target(model, tokenizer, records: list[dict], cfg: dict, progress: bool = True,
                     domains: list[str] | None = None, domain_routing: float = 0.0):
    """Pre-train on every domain with the router's load-balancing loss (output_router_logits on), so
    experts share the load, plus domain routing when asked; routing logits are switched off again for
    saving and inference."""
    extra: dict = {}
    if domain_routing:
        n_experts = min(layer.num_experts for layer in moe_layers(model))
        if len(domains) > n_experts:
            raise UnlearnError(f"domain routing needs an expert per domain: {len(domains)} domains, "
                               f"{n_experts} experts")
        records = [{**r, "domain_id": domains.index(r["domain"])} for r in records]
        extra = {"trainer_cls": partial(DomainRoutingTrainer, weight=domain_routing),
                 "extra_keys": ("domain_id",)}
    model.config.output_router_logits = True
    try:
        return finetune(model, tokenizer, records, cfg, out_dir=None, progress=progress,
                        description="moe target", **extra)
    finally:
        model.config.output_router_logits = False


def prepare_moe(preset: str | MoePreset = "moe", out: str | Path = "moe-world", seed: int = 0,
                force: bool | tuple[str, ...] | list[str] = False, progress: bool = True) -> dict:
    """Generate the multi-domain world and train the MoE target into `out`; return the manifest.

    Layout: out/data (facts_*.jsonl, mcq_*.jsonl, forget.jsonl, retain.jsonl, world.json),
    out/tokenizer, out/target, out/prepare.json. `force=True` or a list of step names ("data",
    "tokenizer", "target") retrains; otherwise steps with a matching hash are reused.
    """
    from unlearnkit.data.world_tokenizer import save_tokenizer, train_tokenizer
    from unlearnkit.eval.mcq import evaluate_domains
    from unlearnkit.finetune import save_model
    from unlearnkit.models.loading import load_hf_dir, load_tokenizer
    from unlearnkit.models.moe import MOE_PRESETS as MODEL_PRESETS
    from unlearnkit.models.moe import build_moe_preset, set_eager_experts

    preset = resolve_moe_preset(preset)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    steps = Steps(force, progress)

    start = time.perf_counter()
    world = generate_moe_world(preset.world, seed)
    data_dir = out / "data"

    def write_data() -> dict:
        write_moe_world(world, data_dir)
        steps.say(f"world: {len(world.train)} training records, {len(world.config.domains)} domains "
                  f"(forget: {world.config.forget_domain}) -> {data_dir}")
        return {}

    steps.run("data", world.hash, data_dir, write_data)

    tok_dir = out / "tokenizer"
    # Tokenizer and target depend on the training text only: rewording the held-out MCQs re-evaluates
    # but does not retrain.
    train_hash = step_hash(world.train)
    tok_hash = step_hash("tokenizer", train_hash, preset.vocab_size)

    def build_tokenizer() -> dict:
        tok = train_tokenizer(world_texts(world), preset.vocab_size)
        save_tokenizer(tok, tok_dir)
        steps.say(f"tokenizer: {len(tok)} tokens -> {tok_dir}")
        return {"vocab_size": len(tok)}

    steps.run("tokenizer", tok_hash, tok_dir, build_tokenizer)
    tokenizer = load_tokenizer(tok_dir)

    cfg = preset.train | {"seed": seed}
    target_dir = out / "target"
    target_hash = step_hash("target", tok_hash, preset.model, MODEL_PRESETS[preset.model], cfg,
                            seed, *([preset.domain_routing] if preset.domain_routing else []))
    # (without routing the hash is the one targets had before the option existed, so they are reused)
    model = None  # built by the target step, else loaded

    def build_target() -> dict:
        nonlocal model
        model = build_moe_preset(preset.model, tokenizer, seed)
        res = train_moe_target(model, tokenizer, world.train, cfg, progress, world.config.domains,
                               preset.domain_routing)
        model.eval()
        save_model(model, tokenizer, target_dir)
        steps.say(f"target: {res.steps} steps in {res.wall_time:.0f}s, final loss {res.final_loss:.3f}")
        return {"n_params": sum(p.numel() for p in model.parameters()), "n_examples": len(world.train),
                "config": cfg, "final_loss": res.final_loss, "steps": res.steps,
                "wall_time": res.wall_time, "losses": res.losses, "domain_routing": preset.domain_routing}

    info = steps.run("target", target_hash, target_dir, build_target)
    if model is None:
        model = set_eager_experts(load_hf_dir(target_dir)[0])
    mcq = evaluate_domains(model, tokenizer, world.mcq, world.config.forget_domain, preset.mcq_mode,
                           preset.mcq_norm)
    info |= {"mcq_accuracy": mcq["accuracy"], "forget_accuracy": mcq["forget_accuracy"],
             "utility_accuracy": mcq["utility_accuracy"]}
    steps.say(f"target MC accuracy: forget ({world.config.forget_domain}) {mcq['forget_accuracy']:.3f}, "
              f"utility {mcq['utility_accuracy']:.3f}")

    manifest = {
        "preset": preset.name, "kind": "moe", "seed": seed, "root": str(out.resolve()),
        "world": {"hash": world.hash, "config": asdict(preset.world), "data_dir": "data",
                  "forget_domain": world.config.forget_domain,
                  "utility_domains": [d for d in world.config.domains if d != world.config.forget_domain]},
        "train_hash": train_hash, "tokenizer": {"dir": "tokenizer", "hash": tok_hash},
        "model": preset.model, "mcq": {"mode": preset.mcq_mode, "norm": preset.mcq_norm},
        "models": {"target": {"dir": "target", **info}},
        "wall_time": time.perf_counter() - start,
    }
    write_json(out / "prepare.json", manifest)
    steps.say(f"[green]prepared[/] {preset.name} world in {manifest['wall_time']:.1f}s -> {out}")
    return manifest
