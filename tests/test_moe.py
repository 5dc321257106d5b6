"""Tiny MoE presets, the multi-domain world, expert plumbing (masks, affinity) and routing diagnostics."""

from __future__ import annotations

import json

import pytest
import torch

from unlearnkit.data.moe_world import (
    DOMAINS,
    MoeWorldConfig,
    generate_moe_world,
    world_texts,
    write_moe_world,
)
from unlearnkit.data.world_tokenizer import train_tokenizer
from unlearnkit.errors import UnlearnError
from unlearnkit.eval.moe import (
    AffinityTracker,
    expert_rank,
    expert_share,
    make_batches,
    routing_overlap,
    routing_sets,
    set_overlap,
)
from unlearnkit.models.moe import (
    MOE_PRESETS,
    anchor_loss,
    build_moe_preset,
    expert_affinity,
    moe_layers,
    restrict_to_expert,
    select_expert,
    sequence_affinity,
    topk_gate_probs,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def world():
    return generate_moe_world(MoeWorldConfig(n_entities=3), seed=0)


@pytest.fixture(scope="module")
def tok(world):
    return train_tokenizer(world_texts(world), 400)


@pytest.fixture(scope="module")
def batches(world, tok):
    return make_batches(tok, world.forget[:12], batch_size=5, max_length=64)


# ------------------------------------------------------------------ world


def test_world_is_deterministic_and_seed_dependent():
    cfg = MoeWorldConfig(n_entities=4)
    a, b = generate_moe_world(cfg, 1), generate_moe_world(cfg, 1)
    c = generate_moe_world(MoeWorldConfig(n_entities=4), 2)
    assert a.facts == b.facts and a.mcq == b.mcq and a.hash == b.hash
    assert a.facts != c.facts and a.hash != c.hash


def test_world_has_five_domains_and_valid_mcqs(world):
    assert len(world.config.domains) >= 5 and world.config.forget_domain in world.config.domains
    pools = {(d.name, r.key): r.values for d in DOMAINS for r in d.relations}
    facts = {(r["entity"], r["relation"]): r["answer"]
             for d in world.facts.values() for r in d if r["kind"] == "qa"}
    for domain, items in world.mcq.items():
        assert len(items) == 3 * 4  # 3 entities x 4 relations
        for item in items:
            assert len(item["choices"]) == 4 and len(set(item["choices"])) == 4
            correct = item["choices"][item["answer"]]
            assert correct == facts[(item["entity"], item["relation"])]
            assert set(item["choices"]) <= set(pools[(domain, item["relation"])])


def test_mcq_wording_is_held_out_of_training_text(world):
    text = "\n".join(world_texts(world))
    for items in world.mcq.values():
        for item in items:
            assert item["question"] not in text
            # ... but the fact itself is in the training text
            assert item["choices"][item["answer"]] in text


def test_domain_value_pools_are_disjoint():
    owner = {}
    for d in DOMAINS:
        for r in d.relations:
            for v in r.values:
                assert owner.setdefault(v, d.name) == d.name, f"{v!r} is used by two domains"


def test_write_world_layout(world, tmp_path):
    paths = write_moe_world(world, tmp_path)
    mcq = [json.loads(line) for line in paths["mcq_chemistry"].read_text().splitlines()]
    assert set(mcq[0]) >= {"question", "choices", "answer"} and isinstance(mcq[0]["answer"], int)
    forget = [json.loads(line) for line in paths["forget"].read_text().splitlines()]
    assert forget == world.forget and all(r["domain"] == "chemistry" for r in forget)
    meta = json.loads(paths["world"].read_text())
    assert meta["forget_domain"] == "chemistry" and len(meta["utility_domains"]) == 4


def test_bad_world_config_is_user_error():
    with pytest.raises(UnlearnError, match="forget domain"):
        generate_moe_world(MoeWorldConfig(forget_domain="cooking"))


# ------------------------------------------------------------------ presets and layout


@pytest.mark.parametrize("name", sorted(MOE_PRESETS))
def test_presets_are_tiny_moe_models(name, tok):
    model = build_moe_preset(name, tok, seed=0)
    n = sum(p.numel() for p in model.parameters())
    assert n <= 10_000_000
    layers = moe_layers(model)
    assert len(layers) == model.config.num_hidden_layers
    assert all(m.num_experts == 8 and m.top_k == 2 for m in layers)
    assert hasattr(layers[0].block, "shared_expert") == (name == "qwen2moe-tiny")
    out = model(input_ids=torch.tensor([[5, 6, 7]]))
    assert out.logits.shape == (1, 3, len(tok))


def test_same_seed_same_weights(tok):
    a, b = build_moe_preset("mixtral-tiny", tok, 3), build_moe_preset("mixtral-tiny", tok, 3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_dense_model_has_no_moe_layers(tok):
    from unlearnkit.models.presets import build_preset

    with pytest.raises(UnlearnError, match="dense model"):
        moe_layers(build_preset("llama-micro", tok))


def test_gradient_mask_keeps_other_experts_at_zero(tok):
    model = build_moe_preset("qwen2moe-tiny", tok, seed=0)
    r = restrict_to_expert(model, layer=1, expert=5)
    x = torch.randint(0, len(tok), (4, 12))
    model(input_ids=x, labels=x).loss.backward()
    experts = model.model.layers[1].mlp.experts
    for p in (experts.gate_up_proj, experts.down_proj):
        assert p.grad[5].abs().sum() > 0
        assert torch.count_nonzero(torch.cat([p.grad[:5].flatten(), p.grad[6:].flatten()])) == 0
    assert model.model.layers[1].mlp.gate.weight.grad.abs().sum() > 0
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"model.layers.1.mlp.experts.gate_up_proj", "model.layers.1.mlp.experts.down_proj",
                         "model.layers.1.mlp.gate.weight"}
    cfg = model.config
    expected = 3 * cfg.moe_intermediate_size * cfg.hidden_size + cfg.num_experts * cfg.hidden_size
    assert r.trainable_params == expected and 0 < r.share < 0.05


# ------------------------------------------------------------------ affinity


def test_affinity_pieces_by_hand():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 1.5, 0.5], [9.0, 0.0, 0.0]])
    g = topk_gate_probs(logits, top_k=2)
    p = torch.softmax(logits, -1)
    expected = torch.tensor([[p[0, 0], p[0, 1], 0], [p[1, 0], 0, p[1, 2]] if p[1, 0] >= p[1, 1] else
                             [0, p[1, 1], p[1, 2]], [p[2, 0], p[2, 1], 0], [p[3, 0], p[3, 1], 0]])
    assert torch.allclose(g, expected)
    # two sequences of 2 tokens; the second token of sequence 2 is padding
    mask = torch.tensor([[1, 1], [1, 0]])
    s = sequence_affinity(g, mask)
    assert torch.allclose(s[0], (g[0] + g[1]) / 2) and torch.allclose(s[1], g[2])


def test_affinity_equals_hand_computation_from_model_router_logits(tok, batches):
    """Hooks + vectorised maths vs transformers' own output_router_logits and plain Python loops."""
    model = build_moe_preset("qwen2moe-tiny", tok, seed=1)
    aff = expert_affinity(model, batches)
    k, n_exp = model.config.num_experts_per_tok, model.config.num_experts
    totals = torch.zeros(model.config.num_hidden_layers, n_exp, dtype=torch.float64)
    n_seq = 0
    for batch in batches:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    output_router_logits=True)
        B, T = batch["input_ids"].shape
        for layer, logits in enumerate(out.router_logits):
            probs = torch.softmax(logits.double(), -1).view(B, T, n_exp)
            for b in range(B):
                real = [t for t in range(T) if batch["attention_mask"][b, t]]
                for t in real:
                    top = sorted(range(n_exp), key=lambda e: -probs[b, t, e].item())[:k]
                    for e in top:
                        totals[layer, e] += probs[b, t, e].item() / len(real)
        n_seq += B
    assert torch.allclose(aff.double(), totals / n_seq, atol=1e-6)
    # each token spreads at most 1 over its top-k, so a layer's row sums to <= 1
    assert (aff.sum(-1) <= 1 + 1e-6).all()
    layer, expert = select_expert(aff, list(range(4)))
    assert aff[layer, expert] == aff.max()


def test_padding_does_not_change_affinity(tok, world):
    model = build_moe_preset("mixtral-tiny", tok, seed=0)
    records = world.forget[:6]
    a = expert_affinity(model, make_batches(tok, records, batch_size=1))
    b = expert_affinity(model, make_batches(tok, records, batch_size=6))
    assert torch.allclose(a, b, atol=1e-5)


def test_anchor_loss_by_hand():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 5.0, 0.0]])
    # token 0: p = 1/4 each, e* = 1: (1/4)^2 * 3 + (3/4)^2 = 0.75
    p1 = torch.softmax(logits[1], -1)
    t1 = p1[0] ** 2 + (p1[1] - 1) ** 2 + p1[2] ** 2 + p1[3] ** 2
    assert anchor_loss(logits[:1], expert=1).item() == pytest.approx(0.75)
    assert anchor_loss(logits[:2], expert=1).item() == pytest.approx((0.75 + t1.item()) / 2)
    masked = anchor_loss(logits, expert=1, token_mask=torch.tensor([1, 0, 1]))
    p2 = torch.softmax(logits[2], -1)
    t2 = (p2 ** 2).sum() - p2[1] ** 2 + (p2[1] - 1) ** 2
    assert masked.item() == pytest.approx((0.75 + t2.item()) / 2, rel=1e-6)
    # perfectly routed tokens cost nothing; the gradient points toward the expert
    assert anchor_loss(torch.tensor([[0.0, 50.0, 0.0]]), expert=1).item() == pytest.approx(0, abs=1e-12)
    x = torch.zeros(1, 3, requires_grad=True)
    anchor_loss(x, expert=2).backward()
    assert x.grad[0, 2] < 0 < x.grad[0, 0]


# ------------------------------------------------------------------ diagnostics


def test_routing_overlap(tok, batches):
    assert set_overlap(torch.tensor([[0, 1], [2, 3]]), torch.tensor([[1, 5], [2, 3]])) == pytest.approx(0.75)
    model = build_moe_preset("qwen2moe-tiny", tok, seed=0)
    before = routing_sets(model, batches)
    assert routing_overlap(before, routing_sets(model, batches))["mean"] == 1.0
    n_real = sum(int(b["attention_mask"].sum()) for b in batches)
    assert before[0].shape == (n_real, 2)
    with torch.no_grad():
        model.model.layers[2].mlp.gate.weight.mul_(-1.0)  # reverse layer 2's preferences
    after = routing_overlap(before, routing_sets(model, batches))
    assert after["per_layer"][0] == 1.0 and after["per_layer"][1] == 1.0
    assert after["per_layer"][2] < 0.5


def test_expert_rank():
    aff = torch.tensor([[0.1, 0.5], [0.3, 0.2]])
    assert expert_rank(aff, [0, 3], 0, 1) == 1 and expert_rank(aff, [0, 3], 3, 0) == 2
    assert expert_rank(aff, [0, 3], 0, 0) == 4


def test_affinity_tracker_trace(tok, batches):
    model = build_moe_preset("qwen2moe-tiny", tok, seed=0)
    tracker = AffinityTracker(batches)
    tracker.on_train_begin(None, None, None, model=model)
    aff = expert_affinity(model, batches)
    layer, expert = select_expert(aff, list(range(4)))
    row = tracker.trace(list(range(4)), layer, expert)[0]
    assert row["step"] == 0 and row["rank"] == 1 and row["affinity"] == pytest.approx(float(aff.max()))


# ------------------------------------------------------------------ prepare pipeline


def test_prepare_moe_micro(tmp_path):
    from unlearnkit.models.loading import load_model_and_tokenizer
    from unlearnkit.prepare.moe import prepare_moe

    m = prepare_moe("moe-micro", tmp_path, seed=0, progress=False)
    target = m["models"]["target"]
    assert not target["reused"] and target["steps"] > 0 and target["n_params"] <= 10_000_000
    assert set(target["mcq_accuracy"]) == {d.name for d in DOMAINS}
    for name in ("forget.jsonl", "retain.jsonl", "mcq_chemistry.jsonl", "facts_music.jsonl", "world.json"):
        assert (tmp_path / "data" / name).is_file()
    model, tok = load_model_and_tokenizer(tmp_path / "target")
    assert moe_layers(model) and not model.config.output_router_logits
    again = prepare_moe("moe-micro", tmp_path, seed=0, progress=False)
    assert again["models"]["target"]["reused"]


def test_domain_routing_loss_by_hand():
    from unlearnkit.prepare.moe import domain_routing_loss

    # two layers, 2 sequences x 2 tokens (router logits flattened to (B*T, E)); token (1, 1) is padding
    layer0 = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [9.0, 9.0, 9.0]])
    layer1 = torch.tensor([[0.0, 3.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    domain, mask = torch.tensor([0, 1]), torch.tensor([[1, 1], [1, 0]])

    def nll(row, target):
        return -torch.log_softmax(row, -1)[target].item()

    hand0 = (nll(layer0[0], 0) + nll(layer0[1], 0) + nll(layer0[2], 1)) / 3
    hand1 = (nll(layer1[0], 0) + nll(layer1[1], 0) + nll(layer1[2], 1)) / 3
    got = domain_routing_loss((layer0, layer1), domain, mask)
    assert got.item() == pytest.approx((hand0 + hand1) / 2, rel=1e-6)


@pytest.mark.slow  # 20 s on a busy machine: MoE pre-training
def test_domain_routing_makes_each_domain_prefer_its_expert(world, tok):
    """Pre-training with the routing term: domain d's tokens go to expert d far above chance (2/8)."""
    from unlearnkit.finetune import finetune_settings
    from unlearnkit.prepare.moe import train_moe_target

    domains = world.config.domains
    cfg = finetune_settings(epochs=3, lr=3e-3, batch_size=16, max_length=64)

    def share_of_own_expert(model) -> float:
        shares = []
        for d, name in enumerate(domains):
            records = [r for r in world.train if r["domain"] == name][:12]
            for chosen in routing_sets(model, make_batches(tok, records, batch_size=12)).values():
                shares.append((chosen == d).any(-1).float().mean().item())
        return sum(shares) / len(shares)

    routed = build_moe_preset("qwen2moe-tiny", tok, seed=0)
    train_moe_target(routed, tok, world.train, cfg, False, domains, domain_routing=1.0)
    plain = build_moe_preset("qwen2moe-tiny", tok, seed=0)
    train_moe_target(plain, tok, world.train, cfg, False)
    assert share_of_own_expert(routed) > 0.9 > 0.5 > share_of_own_expert(plain)
    assert not routed.config.output_router_logits
    with pytest.raises(UnlearnError, match="an expert per domain"):
        train_moe_target(plain, tok, world.train, cfg, False, [f"d{i}" for i in range(9)], 1.0)


def test_experts_cli_contrast_ranking(tok, world, tmp_path, capsys):
    """`unlearn experts --selection contrast` on a world directory: score = forget − retain affinity."""
    from helpers import run_cli

    from unlearnkit.finetune import save_model
    from unlearnkit.models.moe import selection_scores

    model = build_moe_preset("mixtral-tiny", tok, seed=1)
    save_model(model, tok, tmp_path / "m")
    write_moe_world(world, tmp_path / "w" / "data")
    code, err = run_cli(capsys, "experts", "--model", tmp_path / "m", "--data", tmp_path / "w",
                        "--selection", "contrast", "--out", tmp_path / "o", "--batch-size", "8")
    assert code == 0, err
    rep = json.loads((tmp_path / "o" / "affinity.json").read_text())
    f_aff = expert_affinity(model, make_batches(tok, world.forget, 8, 256))
    r_aff = expert_affinity(model, make_batches(tok, world.retain, 8, 256))
    assert torch.allclose(torch.tensor(rep["retain_affinity"]), r_aff, atol=1e-5)
    scores = selection_scores(f_aff, r_aff, "contrast")
    assert (rep["selected"]["layer"], rep["selected"]["expert"]) == select_expert(scores, [0, 1, 2, 3])
    top = rep["ranking"][0]
    assert top["score"] == pytest.approx(top["affinity"] - top["retain_affinity"], abs=1e-6)
    code, err = run_cli(capsys, "experts", "--model", tmp_path / "m", "--data", tmp_path / "w",
                        "--selection", "ratio")
    assert code == 2 and "--selection 'ratio' is not valid" in err


def test_run_cli_on_a_moe_world_trains_one_expert_and_scores_mcq(tok, world, tmp_path, capsys):
    """`unlearn run --method uoe_gd` on a multiple-choice world: trains, saves, and MCQ_EVAL.json holds
    the accuracies of the saved model; --reference (a TOFU notion) is refused with one line."""
    from helpers import run_cli

    from unlearnkit.eval.mcq import evaluate_domains, load_domain_sets
    from unlearnkit.finetune import save_model
    from unlearnkit.models.loading import load_model_and_tokenizer

    model = build_moe_preset("qwen2moe-tiny", tok, seed=1)
    save_model(model, tok, tmp_path / "m")
    write_moe_world(world, tmp_path / "w")
    code, err = run_cli(capsys, "run", "--method", "uoe_gd", "--model", tmp_path / "m", "--data",
                        tmp_path / "w", "--out", tmp_path / "o", "train.max_steps=2", "train.lr=1e-2")
    assert code == 0, err
    record = json.loads((tmp_path / "o" / "run.json").read_text())
    assert record["forget"] == world.config.forget_domain and record["extra"]["trainable_share"] < 0.1
    report = json.loads((tmp_path / "o" / "eval" / "MCQ_EVAL.json").read_text())
    trained, _ = load_model_and_tokenizer(tmp_path / "o" / "model")
    again = evaluate_domains(trained, tok, load_domain_sets(tmp_path / "w"), world.config.forget_domain)
    assert report["accuracy"] == again["accuracy"] and report["forget"] == world.config.forget_domain
    assert record["summary"]["utility_accuracy"] == again["utility_accuracy"]
    # diagnostics: routing before/after on the first forget and retain records, watching the trained expert
    routing = json.loads((tmp_path / "o" / "diagnostics" / "ROUTING.json").read_text())
    layer, expert = record["extra"]["expert_layer"], record["extra"]["expert"]
    assert routing["watched"] == {"layer": layer, "expert": expert} == record["routing"]["watched"]
    overlaps = {}
    for part in ("forget", "retain"):
        batches = make_batches(tok, getattr(world, part)[:64], batch_size=16, max_length=256)
        before, after = routing_sets(model, batches), routing_sets(trained, batches)
        assert routing["expert_share"][part] == {"before": expert_share(before, layer, expert),
                                                 "after": expert_share(after, layer, expert)}
        overlaps[part] = routing_overlap(before, after)
        for lay in range(layer):  # layers below the trained one see unchanged inputs
            assert routing["overlap"][part]["per_layer"][str(lay)] == 1.0
    assert record["routing"]["overlap_forget"] == pytest.approx(overlaps["forget"]["mean"])
    assert [t["step"] for t in routing["trace"]][0] == 0 and routing["trace"][-1]["step"] == 2
    for name in ("affinity_before.png", "affinity_after.png", "expert_tracking.png"):
        assert (tmp_path / "o" / "diagnostics" / name).stat().st_size > 0
    code, err = run_cli(capsys, "run", "--method", "uoe_gd", "--model", tmp_path / "m", "--data",
                        tmp_path / "w", "--out", tmp_path / "o2", "--reference", tmp_path / "m")
    assert code == 2 and "multiple-choice world" in err and not (tmp_path / "o2").exists()


def test_stop_at_forget_accuracy(tok, world, tmp_path, capsys):
    """eval.stop_at_forget_accuracy: a threshold every check meets stops at the first check, and the saved
    model is the one that check scored; one no check meets leaves training exactly as without the
    option; on TOFU data the option is refused before anything runs."""
    from helpers import run_cli
    from safetensors.torch import load_file

    from unlearnkit.eval.mcq import load_domain_sets, mcq_accuracy
    from unlearnkit.finetune import save_model
    from unlearnkit.models.loading import load_model_and_tokenizer

    save_model(build_moe_preset("qwen2moe-tiny", tok, seed=1), tok, tmp_path / "m")
    write_moe_world(world, tmp_path / "w")
    base = ["run", "--method", "uoe_ga", "--model", tmp_path / "m", "--data", tmp_path / "w",
            "train.max_steps=4", "train.lr=1e-2", "train.save_strategy=no", "eval.enabled=false"]

    def record(name: str) -> dict:
        return json.loads((tmp_path / name / "run.json").read_text())

    code, err = run_cli(capsys, *base, "--out", tmp_path / "early", "--stop-at-forget-accuracy", "1",
                        "eval.stop_check_steps=2")
    assert code == 0, err
    early = record("early")
    assert early["global_steps"] == 2 and early["stopped_at_step"] == 2
    [check] = early["forget_accuracy_checks"]
    trained, _ = load_model_and_tokenizer(tmp_path / "early" / "model")
    items = load_domain_sets(tmp_path / "w")[world.config.forget_domain]
    assert check == {"step": 2, "forget_accuracy": mcq_accuracy(trained, tok, items)["accuracy"]}

    for name, extra in (("never", ["--stop-at-forget-accuracy", "0"]), ("plain", [])):
        # a small lr keeps forget accuracy above 0 for 4 steps (GA at 1e-2 reaches 0 on this tiny world)
        code, err = run_cli(capsys, *base, "--out", tmp_path / name, "train.lr=1e-3", *extra)
        assert code == 0, err
    never = record("never")
    assert never["stopped_at_step"] is None and record("plain")["global_steps"] == never["global_steps"] == 4
    assert [c["step"] for c in never["forget_accuracy_checks"]] == [1, 2, 3, 4]
    a, b = (load_file(tmp_path / name / "model" / "model.safetensors") for name in ("never", "plain"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    code, err = run_cli(capsys, "run", "--method", "ga", "--model", tmp_path / "m", "--data",
                        tmp_path / "tofu", "--out", tmp_path / "o", "--stop-at-forget-accuracy", "0.3")
    assert code == 2 and "needs a multiple-choice world" in err and not (tmp_path / "o").exists()
