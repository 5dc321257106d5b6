"""Unlearning baselines: each loss equals a hand computation; training moves the right weights only."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import qa_texts, word_tokenizer
from transformers import PreTrainedTokenizerFast

from unlearnkit.data.formatting import IGNORE_INDEX
from unlearnkit.data.unlearning import ForgetRetainDataset, PairedCollator, load_refusals
from unlearnkit.errors import UnlearnError
from unlearnkit.methods import build_trainer, get_method, list_methods, unlearn
from unlearnkit.methods.rmu import control_vector
from unlearnkit.models.presets import build_preset

torch.set_num_threads(1)

# answers of different lengths, so batches are padded and per-token vs per-sample means differ
NAMES = [("anna", "paris", "poems"), ("bob", "new york", "cats and dogs"),
         ("carl", "san jose del cabo", "ships"), ("dora", "berlin", "old wars"),
         ("emil", "vienna", "trains"), ("fay", "dublin", "birds")]
FORGET = [{"question": f"Where was the author {n} born ?", "answer": f"The author {n} was born in {c} .",
           "paraphrased_answer": f"{n} was born in the city of {c} .",
           "perturbed_answer": [f"The author {n} was born in {d} ." for d in ("rome", "oslo")]}
          for n, c, _ in NAMES[:4]]
RETAIN = [{"question": f"What did the author {n} write about ?",
           "answer": f"{n} wrote many books about {t} ."} for n, _, t in NAMES]
REFUSALS = ["I don't know .", "I have no idea ."]
BASELINES = ["ga", "gd", "kl", "npo", "npo_gd", "npo_kl", "dpo", "dpo_gd", "dpo_kl", "simnpo", "rmu", "uld"]


def make_tokenizer() -> PreTrainedTokenizerFast:
    return word_tokenizer([*REFUSALS, *qa_texts(FORGET + RETAIN)])


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


@pytest.fixture()
def model(tok):
    return build_preset("llama-micro", tok, seed=0)


@pytest.fixture(scope="module")
def batch(tok):
    """A fixed batch of 4 paired items (forget, retain, refusal)."""
    ds = ForgetRetainDataset(FORGET, RETAIN, tok, max_length=64, seed=0, refusals=REFUSALS)
    return PairedCollator(tok.pad_token_id)([ds[i] for i in range(4)])


# ------------------------------------------------------------------ hand computations (no library helpers)

def hand_token_logp(logits, labels):
    """Per-token log p of the next label, by log_softmax/gather, with a mask of answer tokens."""
    logp = torch.log_softmax(logits[:, :-1].double(), -1)
    tgt = labels[:, 1:]
    mask = tgt != IGNORE_INDEX
    picked = torch.stack([torch.stack([logp[b, t, tgt[b, t]] if mask[b, t] else logp.new_zeros(())
                                       for t in range(tgt.shape[1])]) for b in range(tgt.shape[0])])
    return picked, mask


def hand_seq_logp(m, b):
    logits = m(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    picked, mask = hand_token_logp(logits, b["labels"])
    return picked.sum(-1), mask.sum(-1)


def hand_ce(m, b):
    logits = m(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    v = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, v).double(), b["labels"][:, 1:].reshape(-1),
                           ignore_index=IGNORE_INDEX)


def hand_kl(m, ref, b):
    """KL(ref || m) summed over the vocabulary, averaged over retain answer positions."""
    args = dict(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
    lp = torch.log_softmax(m(**args).logits[:, :-1].double(), -1)
    lr = torch.log_softmax(ref(**args).logits[:, :-1].double(), -1)
    per_pos = F.kl_div(lp, lr, log_target=True, reduction="none").sum(-1)
    mask = b["labels"][:, 1:] != IGNORE_INDEX
    return per_pos[mask].mean()


def hand_forget(name, m, ref, b, p):
    f = b["forget"]
    if name in ("ga", "gd", "kl"):
        return -hand_ce(m, f)
    if name.startswith("npo"):
        beta = p["beta"]
        d = hand_seq_logp(m, f)[0] - hand_seq_logp(ref, f)[0]
        # the paper's form: (2/β) mean log(1 + (π_θ/π_ref)^β)
        return (2 / beta) * torch.log1p(torch.exp(beta * d)).mean()
    if name.startswith("dpo"):
        beta = p["beta"]
        w = hand_seq_logp(m, b["forget_idk"])[0] - hand_seq_logp(ref, b["forget_idk"])[0]
        lo = hand_seq_logp(m, f)[0] - hand_seq_logp(ref, f)[0]
        return -(2 / beta) * torch.log(torch.sigmoid(beta * (w - lo))).mean()
    if name == "simnpo":
        beta, delta = p["beta"], p["delta"]
        logp, n = hand_seq_logp(m, f)
        # paper: −(2/β) log σ(−(β/|y|) log π − γ) with γ = β·δ
        return -(2 / beta) * torch.log(torch.sigmoid(-(beta / n) * logp - beta * delta)).mean()
    raise AssertionError(name)


def hand_total(name, m, ref, b, p):
    total = p.get("gamma", 1.0) * hand_forget(name, m, ref, b, p)
    if p["retain_loss"] == "nll":
        total = total + p["alpha"] * hand_ce(m, b["retain"])
    elif p["retain_loss"] == "kl":
        total = total + p["alpha"] * hand_kl(m, ref, b["retain"])
    return total


def perturb_(m, seed=1, scale=0.3):
    """Move the trainable model away from its reference so log-ratios are not trivially zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for q in m.parameters():
            if q.requires_grad:
                q.add_(torch.randn(q.shape, generator=g) * scale)


TRAIN = dict(max_steps=1, batch_size=4, grad_accum=1, lr=1e-3, logging_steps=1, max_length=64,
             warmup_ratio=0.0)  # one step at a real learning rate (warmup would make it lr 0)

# ------------------------------------------------------------------ losses


@pytest.mark.parametrize("name", ["ga", "gd", "kl", "npo", "npo_gd", "npo_kl", "dpo", "dpo_gd", "dpo_kl",
                                  "simnpo"])
def test_loss_equals_hand_computation(name, model, tok, batch, tmp_path):
    # SimNPO: β, δ where the forget term is far from saturation on a random model (NLL ≈ 4)
    params = {"beta": 0.5, "delta": 3.0} if name == "simnpo" else {}
    trainer = build_trainer(name, model, tok, FORGET, RETAIN, params, TRAIN, tmp_path, refusals=REFUSALS)
    ref = copy.deepcopy(model).eval()  # the original, before we move the model
    perturb_(model)
    model.eval()
    with torch.no_grad():
        got = trainer.compute_loss(model, batch)
        want = hand_total(name, model, ref, batch, trainer.params.to_dict())
    assert torch.isfinite(got)
    assert got.item() == pytest.approx(want.item(), rel=1e-4, abs=1e-5)


def test_npo_at_reference_is_2_log2_over_beta(model, tok, batch, tmp_path):
    """At θ = ref every log-ratio is 0, so NPO = (2/β) log 2 exactly — the β used matters."""
    trainer = build_trainer("npo", model, tok, FORGET, RETAIN, {"beta": 0.5}, TRAIN, tmp_path)
    with torch.no_grad():
        assert trainer.compute_loss(model.eval(), batch).item() == pytest.approx(4 * math.log(2), rel=1e-5)


def test_rmu_loss_equals_hand_computation(model, tok, batch, tmp_path):
    params = {"layer": 1, "steering_coeff": 5.0, "alpha": 10.0}
    trainer = build_trainer("rmu", model, tok, FORGET, RETAIN, params, TRAIN, tmp_path)
    trainable = sorted(n for n, q in model.named_parameters() if q.requires_grad)
    assert trainable == ["model.layers.0.mlp.down_proj.weight", "model.layers.1.mlp.down_proj.weight"]
    ref = copy.deepcopy(model).eval()
    perturb_(model)
    model.eval()

    def acts(m, b):
        out = m(input_ids=b["input_ids"], attention_mask=b["attention_mask"], output_hidden_states=True)
        return out.hidden_states[2].double()  # output of layer 1

    def mse(a, t, b):
        mask = (b["labels"] != IGNORE_INDEX).double()
        per_tok = ((a - t) ** 2).mean(-1)
        return ((per_tok * mask).sum(-1) / mask.sum(-1)).mean()

    g = torch.Generator().manual_seed(TRAIN.get("seed", 0))
    u = torch.rand(64, generator=g).double()
    cu = 5.0 * u / u.norm()
    with torch.no_grad():
        want = mse(acts(model, batch["forget"]), cu, batch["forget"]) + 10.0 * mse(
            acts(model, batch["retain"]), acts(ref, batch["retain"]), batch["retain"])
        got = trainer.compute_loss(model, batch)
    assert got.item() == pytest.approx(want.item(), rel=1e-4)
    assert torch.allclose(control_vector(64, 5.0, 0).double(), cu)


# ------------------------------------------------------------------ training behaviour


def forget_nll(m, tok):
    ds = ForgetRetainDataset(FORGET, [], tok, max_length=64)
    b = PairedCollator(tok.pad_token_id)([ds[i] for i in range(len(ds))])["forget"]
    with torch.no_grad():
        return hand_ce(m.eval(), b).item()


def test_ga_kl_raises_forget_nll_and_never_changes_the_reference(model, tok, tmp_path):
    before = forget_nll(model, tok)
    train = {**TRAIN, "max_steps": 4, "lr": 5e-3, "warmup_ratio": 0.0}
    trainer = build_trainer("ga_kl", model, tok, FORGET, RETAIN, None, train, tmp_path)
    assert trainer.method_spec.name == "kl"
    ref_before = {k: v.clone() for k, v in trainer.ref_model.state_dict().items()}
    target_before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer.train()
    assert forget_nll(model, tok) > before + 0.05
    assert trainer.train_dataset.epoch == 3  # 4 epochs of 1 step: the retain pairing moved each epoch
    assert all(torch.equal(v, ref_before[k]) for k, v in trainer.ref_model.state_dict().items())
    assert not all(torch.equal(v, target_before[k]) for k, v in model.state_dict().items())
    assert all(not q.requires_grad for q in trainer.ref_model.parameters())
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 4 and {"forget_loss", "retain_loss", "forget_nll"} <= set(logged[0])


def test_lora_trains_only_adapters_and_uses_base_as_reference(model, tok, tmp_path):
    # peft wraps in place: the original Parameter objects become the base layers; keep them and copies
    base_before = [(q, q.detach().clone()) for q in model.parameters()]
    train = {**TRAIN, "max_steps": 3, "lr": 1e-2, "lora": {"r": 4, "alpha": 8, "dropout": 0.0}}
    result = unlearn("npo_gd", model, tok, FORGET, RETAIN, None, train, out_dir=tmp_path / "run")
    peft_model = result.model
    assert peft_model.__class__.__name__.startswith("PeftModel")
    trainable = [n for n, q in peft_model.named_parameters() if q.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert result.trainable_params == sum(q.numel() for q in peft_model.parameters() if q.requires_grad)
    base_ids = {id(q) for q in peft_model.parameters()}
    assert all(id(q) in base_ids and torch.equal(q, before) for q, before in base_before)
    ids = torch.tensor([[3, 4, 5, 6]])
    with torch.no_grad():
        with peft_model.disable_adapter():
            off = peft_model(input_ids=ids).logits
        on = peft_model(input_ids=ids).logits
    assert not torch.allclose(on, off)
    assert (tmp_path / "run" / "model" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "run" / "unlearn.json").is_file()


def test_lora_reference_is_the_base_without_adapters(model, tok, batch, tmp_path):
    ref = copy.deepcopy(model).eval()
    train = {**TRAIN, "lora": {"r": 4, "alpha": 8, "dropout": 0.0}}
    trainer = build_trainer("npo_kl", model, tok, FORGET, RETAIN, None, train, tmp_path)
    assert trainer.ref_model is None  # no copy: adapters are switched off for the reference forward
    perturb_(trainer.model)  # moves only the adapters (the only trainable tensors)
    trainer.model.eval()
    with torch.no_grad():
        got = trainer.compute_loss(trainer.model, batch)
        want = hand_total("npo_kl", trainer.model, ref, batch, trainer.params.to_dict())
    assert got.item() == pytest.approx(want.item(), rel=1e-4)


@pytest.mark.parametrize("lora", [None, {"r": 2, "alpha": 4, "dropout": 0.0}])
def test_rmu_updates_only_the_chosen_mlps(model, tok, lora):
    before = [(n, q, q.detach().clone()) for n, q in model.named_parameters()]
    train = {**TRAIN, "max_steps": 2, "lr": 1e-2, "lora": lora}
    result = unlearn("rmu", model, tok, FORGET, RETAIN, {"layer": 1, "update_layers": [1]}, train)
    changed = {n for n, q, old in before if not torch.equal(q, old)}
    assert changed == ({"model.layers.1.mlp.down_proj.weight"} if lora is None else set())
    trainable = {n for n, q in result.model.named_parameters() if q.requires_grad}
    assert trainable and all("layers.1.mlp.down_proj" in n for n in trainable)
    assert result.extra["steering_coeff"] > 0  # auto: a multiple of the frozen activation norm


def test_same_seed_same_numbers(tok, tmp_path):
    runs = []
    for _ in range(2):
        m = build_preset("llama-micro", tok, seed=0)
        r = unlearn("gd", m, tok, FORGET, RETAIN, None, {**TRAIN, "max_steps": 3, "batch_size": 2})
        runs.append(([h["loss"] for h in r.log_history if "loss" in h], m.state_dict()))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(v, runs[1][1][k]) for k, v in runs[0][1].items())


def test_non_finite_loss_stops_with_a_clear_error(model, tok, tmp_path):
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight[0, 0] = float("nan")
    with pytest.raises(UnlearnError, match="became nan at step 1: lower the learning rate"):
        unlearn("ga", model, tok, FORGET, RETAIN, None, TRAIN)


# ------------------------------------------------------------------ registry


def test_unknown_method_names_the_closest():
    with pytest.raises(UnlearnError, match="did you mean 'npo_gd'"):
        get_method("npo_gdd")
    with pytest.raises(UnlearnError, match="did you mean 'simnpo'"):
        get_method("simnpoo")


def test_aliases_resolve_to_canonical_names(model, tok):
    assert get_method("idk") is get_method("dpo") and get_method("GA-KL").name == "kl"
    assert set(list_methods()) == set(BASELINES) | {"uoe_ga", "uoe_gd", "uoe_npo", "uoe_rmu"}
    result = unlearn("idk", model, tok, FORGET, RETAIN, None, {**TRAIN, "max_steps": 1})
    assert result.method == "dpo"


def test_bad_params_are_user_errors(model, tok):
    with pytest.raises(UnlearnError, match="unknown parameter"):
        get_method("npo").resolve_params({"betta": 1})
    with pytest.raises(UnlearnError, match="retain_loss='kl' is not supported by gd"):
        build_trainer("gd", model, tok, FORGET, RETAIN, {"retain_loss": "kl"}, TRAIN)
    with pytest.raises(UnlearnError, match="unknown training setting .learnig_rate.: did you mean"):
        unlearn("ga", model, tok, FORGET, RETAIN, None, {"learnig_rate": 1e-3})


def test_params_are_typed_and_merge_nested_defaults():
    """method.params is a mapping merged into the method's dataclass: nested values key by key, every
    value checked against its annotation, the defaults recorded in full."""
    params = get_method("uld").resolve_params({"lora": {"r": 8}, "weight": 1})
    assert params.to_dict()["lora"] == {"r": 8, "alpha": 32, "dropout": 0.05} and params.weight == 1
    assert get_method("npo_gd").resolve_params(None).to_dict() == {"gamma": 1.0, "alpha": 1.0,
                                                                   "retain_loss": "nll", "beta": 0.1}
    with pytest.raises(UnlearnError, match="method uld: kl_weight='abc' must be a number"):
        get_method("uld").resolve_params({"kl_weight": "abc"})
    with pytest.raises(UnlearnError, match=r"unknown parameter\(s\) \['lora.rank'\] for method uld"):
        get_method("uld").resolve_params({"lora": {"rank": 8}})
    with pytest.raises(UnlearnError, match="give both expert_layer and expert"):
        get_method("uoe_ga").resolve_params({"expert": 3})


# ------------------------------------------------------------------ data


def test_forget_retain_dataset_pairs_deterministically(tok):
    ds = ForgetRetainDataset(FORGET, RETAIN, tok, max_length=64, seed=3)
    again = ForgetRetainDataset(FORGET, RETAIN, tok, max_length=64, seed=3)
    assert len(ds) == len(FORGET)
    first = [ds.retain_index(i) for i in range(len(ds))]
    assert first == [again.retain_index(i) for i in range(len(ds))]
    assert len(set(first)) == len(first)  # distinct partners within an epoch
    ds.set_epoch(1)
    assert [ds.retain_index(i) for i in range(len(ds))] != first  # next epoch: other retain items
    item = ds[0]
    assert item["forget"]["labels"][-1] == tok.eos_token_id and "forget_idk" not in item
    answer = [t for t in item["forget"]["labels"] if t != IGNORE_INDEX]
    assert tok.decode(answer[:-1]) == FORGET[0]["answer"]
    b = PairedCollator(tok.pad_token_id)([ds[i] for i in range(3)])
    assert set(b) == {"forget", "retain"} and b["forget"]["input_ids"].shape[0] == 3


def test_refusals_builtin_and_from_file(tmp_path, tok):
    assert len(load_refusals()) >= 10 and "I don't know." in load_refusals()
    path = tmp_path / "idk.txt"
    path.write_text("I have no idea .\n\n", encoding="utf-8")
    assert load_refusals(path) == ["I have no idea ."]
    ds = ForgetRetainDataset(FORGET, [], tok, max_length=64, refusals=load_refusals(path))
    answer = [t for t in ds[0]["forget_idk"]["labels"] if t != IGNORE_INDEX]
    assert tok.decode(answer[:-1]) == "I have no idea ."
    with pytest.raises(UnlearnError, match="does not exist"):
        load_refusals(tmp_path / "missing.txt")
