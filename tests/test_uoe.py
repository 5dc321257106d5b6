"""UOE: one expert + its router train (bitwise nothing else), anchor term, expert selection, errors."""

from __future__ import annotations

import pytest
import torch

from unlearnkit.data.moe_world import MoeWorldConfig, generate_moe_world, world_texts
from unlearnkit.data.world_tokenizer import train_tokenizer
from unlearnkit.errors import UnlearnError
from unlearnkit.methods import build_trainer, unlearn
from unlearnkit.models.moe import anchor_loss, build_moe_preset, expert_affinity, is_moe, select_expert
from unlearnkit.models.presets import build_preset

torch.set_num_threads(1)

# A few steps with weight decay on: decay must not touch the frozen experts of the fused tensors.
TRAIN = {"lr": 1e-2, "epochs": 1, "batch_size": 4, "grad_accum": 1, "weight_decay": 0.1, "max_steps": 2,
         "warmup_ratio": 0.0, "max_length": 48, "logging_steps": 1}


@pytest.fixture(scope="module")
def world():
    return generate_moe_world(MoeWorldConfig(n_entities=2), seed=0)


@pytest.fixture(scope="module")
def tok(world):
    return train_tokenizer(world_texts(world), 400)


def _snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("method", ["uoe_ga", "uoe_gd", "uoe_npo", "uoe_rmu"])
def test_only_the_chosen_expert_and_router_change(method, tok, world):
    model = build_moe_preset("qwen2moe-tiny", tok, seed=0)
    before = _snapshot(model)
    trainer = build_trainer(method, model, tok, world.forget[:8], world.retain[:8], train=TRAIN)
    layer, expert = trainer.expert_layer, trainer.expert
    trainer.train()
    prefix = f"model.layers.{layer}.mlp."
    for name, p in model.named_parameters():
        if name in (prefix + "experts.gate_up_proj", prefix + "experts.down_proj"):
            others = [e for e in range(p.shape[0]) if e != expert]
            assert torch.equal(p[others], before[name][others]), f"{name}: another expert moved"
            assert not torch.equal(p[expert], before[name][expert]), f"{name}: expert {expert} did not train"
        elif name == prefix + "gate.weight":
            assert not torch.equal(p, before[name]), "the router did not train"
        else:
            assert torch.equal(p, before[name]), f"{name} changed"
    rec = trainer.extra_record()
    assert rec["expert_layer"] == layer and rec["expert"] == expert and 0 < rec["trainable_share"] < 0.05
    losses = [h for h in trainer.state.log_history if "anchor_loss" in h]
    assert losses and all(0 <= h["anchor_loss"] <= 2 for h in losses)


def test_selected_expert_is_the_highest_affinity_one(tok, world):
    from unlearnkit.eval.moe import make_batches

    model = build_moe_preset("mixtral-tiny", tok, seed=2)
    forget = world.forget[:8]
    aff = expert_affinity(model, make_batches(tok, forget, batch_size=4, max_length=48))
    trainer = build_trainer("uoe_ga", model, tok, forget, train=TRAIN)
    assert torch.allclose(trainer.affinity, aff, atol=1e-6)
    assert (trainer.expert_layer, trainer.expert) == select_expert(aff, list(range(4)))
    fixed = build_trainer("uoe_ga", build_moe_preset("mixtral-tiny", tok, seed=2), tok, forget,
                          params={"expert_layer": 0, "expert": 6}, train=TRAIN)
    assert (fixed.expert_layer, fixed.expert) == (0, 6)


def test_anchor_term_is_added_with_its_weight(tok, world):
    """loss(α) − loss(0) = α · A, with A recomputed by hand from the router's logits."""
    forget = world.forget[:4]
    model = build_moe_preset("qwen2moe-tiny", tok, seed=0)
    trainer = build_trainer("uoe_ga", model, tok, forget, params={"anchor_weight": 0.5}, train=TRAIN)
    inputs = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    terms = trainer.loss_terms(model, inputs)
    router = model.model.layers[trainer.expert_layer].mlp.gate
    seen = []
    handle = router.register_forward_hook(lambda m, a, o: seen.append(o[0]))
    batch = inputs["forget"]
    model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    handle.remove()
    probs = torch.softmax(seen[0].double(), -1)
    mask = batch["attention_mask"].reshape(-1).bool()
    onehot = torch.zeros_like(probs)
    onehot[:, trainer.expert] = 1
    by_hand = ((probs - onehot) ** 2).sum(-1)[mask].mean()
    assert terms["anchor_loss"].item() == pytest.approx(by_hand.item(), rel=1e-5)
    assert terms["loss"].item() == pytest.approx(terms["forget_loss"].item() + 0.5 * by_hand.item(), rel=1e-5)
    direct = anchor_loss(seen[0], trainer.expert, batch["attention_mask"])
    assert direct.item() == pytest.approx(by_hand.item(), rel=1e-5)


def test_anchor_keeps_forget_tokens_on_the_expert(tok, world):
    """With only the anchor as objective (no forget gradient), routing to e* rises."""
    forget = world.forget[:8]
    model = build_moe_preset("qwen2moe-tiny", tok, seed=0)
    trainer = build_trainer("uoe_ga", model, tok, forget, params={"anchor_weight": 1.0},
                            train={**TRAIN, "max_steps": 6, "lr": 5e-2})
    trainer.params.gamma = 0.0  # drop the forget loss: the anchor alone drives the router
    before = trainer.affinity[trainer.expert_layer, trainer.expert].item()
    trainer.train()
    from unlearnkit.eval.moe import make_batches

    after = expert_affinity(model, make_batches(tok, forget, 4, 48))[trainer.expert_layer, trainer.expert]
    assert after.item() > before + 0.05


def test_dense_model_is_a_clear_error(tok, world):
    dense = build_preset("llama-micro", tok)
    with pytest.raises(UnlearnError, match="dense model"):
        unlearn("uoe_ga", dense, tok, world.forget[:4], train=TRAIN)
    assert not is_moe(dense) and is_moe(build_moe_preset("qwen2moe-tiny", tok, seed=0))


def test_lora_and_half_given_expert_are_errors(tok, world):
    model = build_moe_preset("qwen2moe-tiny", tok, seed=0)
    with pytest.raises(UnlearnError, match="lora"):
        build_trainer("uoe_ga", model, tok, world.forget[:4], train={**TRAIN, "lora": {"r": 4}})
    with pytest.raises(UnlearnError, match="both expert_layer and expert"):
        build_trainer("uoe_ga", model, tok, world.forget[:4], params={"expert": 1}, train=TRAIN)
    with pytest.raises(UnlearnError, match="does not exist"):
        build_trainer("uoe_ga", model, tok, world.forget[:4], params={"expert_layer": 0, "expert": 8},
                      train=TRAIN)


def test_contrast_selection_by_hand():
    """Contrast = forget − retain affinity: it skips an expert every domain uses."""
    from unlearnkit.models.moe import selection_scores

    forget = torch.tensor([[0.30, 0.12, 0.05], [0.10, 0.09, 0.02]])
    retain = torch.tensor([[0.35, 0.04, 0.05], [0.08, 0.10, 0.01]])
    assert select_expert(selection_scores(forget, retain, "affinity"), [0, 1]) == (0, 0)
    scores = selection_scores(forget, retain, "contrast")
    assert torch.allclose(scores, torch.tensor([[-0.05, 0.08, 0.0], [0.02, -0.01, 0.01]]))
    assert select_expert(scores, [0, 1]) == (0, 1)
    from unlearnkit.models.moe import expert_ranking, only_layers

    deeper = only_layers(scores, [0, 1], [1])
    assert select_expert(deeper, [0, 1]) == (1, 0)
    assert [r[:2] for r in expert_ranking(deeper, [0, 1])] == [(1, 0), (1, 2), (1, 1)]
    with pytest.raises(UnlearnError, match="not MoE layers"):
        only_layers(scores, [0, 1], [2])
    with pytest.raises(UnlearnError, match="needs retain data"):
        selection_scores(forget, None, "contrast")
    with pytest.raises(UnlearnError, match="unknown expert selection"):
        selection_scores(forget, retain, "ratio")


def test_trainer_contrast_selection_uses_retain_affinity(tok, world):
    from unlearnkit.eval.moe import make_batches

    model = build_moe_preset("mixtral-tiny", tok, seed=2)
    forget, retain = world.forget[:8], world.retain[:8]
    f_aff = expert_affinity(model, make_batches(tok, forget, 4, 48))
    r_aff = expert_affinity(model, make_batches(tok, retain, 4, 48))
    trainer = build_trainer("uoe_ga", model, tok, forget, retain, params={"selection": "contrast"},
                            train=TRAIN)
    assert torch.allclose(trainer.retain_affinity, r_aff, atol=1e-6)
    assert (trainer.expert_layer, trainer.expert) == select_expert(f_aff - r_aff, list(range(4)))
    assert trainer.extra_record()["selection"] == "contrast"
    deep = build_trainer("uoe_ga", build_moe_preset("mixtral-tiny", tok, seed=2), tok, forget, retain,
                         params={"selection": "contrast", "candidate_layers": [2, 3]}, train=TRAIN)
    masked = (f_aff - r_aff).clone()
    masked[:2] = float("-inf")
    assert (deep.expert_layer, deep.expert) == select_expert(masked, list(range(4)))
    with pytest.raises(UnlearnError, match="needs retain examples"):
        build_trainer("uoe_ga", model, tok, forget, params={"selection": "contrast"}, train=TRAIN)


def test_frozen_router_and_router_lr_scale(tok, world):
    """router_lr_scale=0: the router stays bitwise, the expert trains; 0.25: the router's lr is a quarter."""
    model = build_moe_preset("qwen2moe-tiny", tok, seed=0)
    before = _snapshot(model)
    trainer = build_trainer("uoe_ga", model, tok, world.forget[:8], params={"router_lr_scale": 0.0},
                            train=TRAIN)
    trainer.train()
    prefix = f"model.layers.{trainer.expert_layer}.mlp."
    assert torch.equal(model.get_parameter(prefix + "gate.weight"), before[prefix + "gate.weight"])
    up = model.get_parameter(prefix + "experts.gate_up_proj")
    assert not torch.equal(up[trainer.expert], before[prefix + "experts.gate_up_proj"][trainer.expert])
    cfg = model.config
    assert trainer.restriction.trainable_params == 3 * cfg.moe_intermediate_size * cfg.hidden_size

    model = build_moe_preset("qwen2moe-tiny", tok, seed=0)
    trainer = build_trainer("uoe_ga", model, tok, world.forget[:8], params={"router_lr_scale": 0.25},
                            train=TRAIN)
    optimizer = trainer.create_optimizer()
    router = model.get_parameter(f"model.layers.{trainer.expert_layer}.mlp.gate.weight")
    lrs = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert lrs[id(router)] == pytest.approx(0.25 * TRAIN["lr"])
    down = model.get_parameter(f"model.layers.{trainer.expert_layer}.mlp.experts.down_proj")
    assert lrs[id(down)] == TRAIN["lr"]
    assert sum(len(g["params"]) for g in optimizer.param_groups) == 3
    with pytest.raises(UnlearnError, match="router_lr_scale"):
        build_trainer("uoe_ga", model, tok, world.forget[:4], params={"router_lr_scale": -1.0}, train=TRAIN)


def test_retain_anchor_by_hand(tok, world):
    """R = mean over retain tokens of ‖softmax(h Wᵀ) − q‖², q = softmax(h W₀ᵀ) without e*, renormalised."""
    forget, retain = world.forget[:4], world.retain[:4]
    model = build_moe_preset("qwen2moe-tiny", tok, seed=0)
    trainer = build_trainer("uoe_ga", model, tok, forget, retain, train=TRAIN,
                            params={"expert_layer": 2, "expert": 5, "retain_anchor_weight": 3.0})
    inputs = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    batch = inputs["retain"]
    router = model.model.layers[2].mlp.gate
    w0 = router.weight.detach().clone()
    with torch.no_grad():
        router.weight.add_(0.3 * torch.randn_like(router.weight))
    seen = []
    handle = router.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach()))
    model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    handle.remove()
    h = seen[0].reshape(-1, seen[0].shape[-1]).double()
    q = torch.softmax(h @ w0.double().T, -1)
    q[:, 5] = 0
    q = q / q.sum(-1, keepdim=True)
    diff = torch.softmax(h @ router.weight.double().T, -1) - q
    by_hand = (diff ** 2).sum(-1)[batch["attention_mask"].reshape(-1).bool()].mean()
    assert by_hand.item() > 1e-3
    terms = trainer.loss_terms(model, inputs)
    assert terms["retain_anchor_loss"].item() == pytest.approx(by_hand.item(), rel=1e-4)
    expected = terms["forget_loss"] + terms["anchor_loss"] + 3.0 * by_hand.item()
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(UnlearnError, match="retain_anchor_weight > 0 needs retain"):
        build_trainer("uoe_ga", model, tok, forget, params={"retain_anchor_weight": 1.0}, train=TRAIN)


@pytest.mark.parametrize("name,selection", [("uoe_ga_moe", "affinity"), ("uoe_gd_moe_plain", "contrast")])
def test_moe_recipe_configs_are_valid(name, selection):
    """configs/uoe_*_moe.yaml: only known params and settings (they are loaded like any run config)."""
    from pathlib import Path

    import yaml

    from unlearnkit.methods import get_method

    path = Path(__file__).parents[1] / "src" / "unlearnkit" / "configs" / f"{name}.yaml"
    data = yaml.safe_load(path.read_text())
    spec = get_method(data["method"]["name"])
    params = spec.resolve_params(data["method"]["params"])
    assert params.selection == selection and params.retain_anchor_weight > 0
    spec.train_settings(data["train"])
