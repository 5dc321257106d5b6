"""ULD training: D'f/D'r construction, the loss by hand, and a short run that trains only the assistant."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import qa_texts, word_tokenizer
from transformers import PreTrainedTokenizerFast

from unlearnkit.data.formatting import IGNORE_INDEX
from unlearnkit.data.unlearning import ForgetRetainDataset, PairedCollator
from unlearnkit.errors import UnlearnError
from unlearnkit.methods import build_trainer, unlearn
from unlearnkit.methods.uld.data import uld_parts
from unlearnkit.methods.uld.trainer import uniform_kl, uniform_kl_positions
from unlearnkit.models.presets import build_preset

torch.set_num_threads(1)

CITIES = [("anna", "paris"), ("bob", "new york"), ("carl", "san jose del cabo"), ("dora", "berlin")]
FORGET = [{"question": f"Where was the author {n} born ?", "answer": f"The author {n} was born in {c} ."}
          for n, c in CITIES]
WRONG = ("rome", "oslo", "lima")
# ULD's augmentation file format (data.augment): paraphrases and wrong answers of each forget question.
AUGMENT = [{"question": f"Where was the author {n} born ?", "answer": f"The author {n} was born in {c} .",
            "paraphrased_questions": [f"In which city was {n} born ?"],
            "paraphrased_answers": [f"{n} was born in the city of {c} .", f"{n} comes from {c} ."],
            "perturbed_answers": [f"The author {n} was born in {d} ." for d in WRONG[: i + 1]]}
           for i, (n, c) in enumerate(CITIES)]
RETAIN = [{"question": f"What did the author {n} write about ?",
           "answer": f"{n} wrote many books about {t} ."}
          for n, t in [("emil", "cats"), ("fay", "old ships"), ("gus", "war and peace"), ("hal", "birds"),
                       ("ida", "trains"), ("jon", "the sea")]]
TRAIN = dict(batch_size=4, grad_accum=1, lr=1e-2, warmup_ratio=0.0, logging_steps=1, max_length=64,
             weight_decay=0.0)


def make_tokenizer() -> PreTrainedTokenizerFast:
    texts = [t for r in AUGMENT for k in ("paraphrased_questions", "paraphrased_answers", "perturbed_answers")
             for t in r[k]]
    return word_tokenizer(qa_texts(FORGET + RETAIN) + texts)


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


@pytest.fixture()
def target(tok):
    return build_preset("llama-micro", tok, seed=0)


# ------------------------------------------------------------------ data


def test_uld_data_sizes_and_contents():
    n_wrong = sum(len(r["perturbed_answers"]) for r in AUGMENT)  # 1+2+3+3 = 9
    parts = uld_parts(FORGET, RETAIN, AUGMENT, seed=0)
    assert parts["forget"] == FORGET
    assert len(parts["retain"]) == len(FORGET) and all(r in RETAIN for r in parts["retain"])
    # each paraphrased answer once, with the paraphrased question (the official code's pairing)
    assert parts["augment_forget"] == [{"question": r["paraphrased_questions"][0], "answer": a}
                                       for r in AUGMENT for a in r["paraphrased_answers"]]
    assert parts["augment_retain"] == [{"question": r["question"], "answer": a}
                                       for r in AUGMENT for a in r["perturbed_answers"]]
    assert len(parts["augment_retain"]) == n_wrong == 9
    own_question = uld_parts(FORGET, RETAIN, AUGMENT, use_questions=False)["augment_forget"]
    assert {r["question"] for r in own_question} == {r["question"] for r in FORGET}
    capped = uld_parts(FORGET, RETAIN, AUGMENT, paraphrases=1, wrong=1)
    assert len(capped["augment_forget"]) == len(capped["augment_retain"]) == len(FORGET)
    bare = uld_parts(FORGET, RETAIN)  # no augmentation file: D'f is the forget set alone
    assert bare["augment_forget"] == bare["augment_retain"] == []
    assert uld_parts(FORGET, RETAIN, seed=1)["retain"] != parts["retain"]  # the sample follows the seed
    everything = uld_parts(FORGET, RETAIN, retain_size="all")["retain"]
    assert sorted(r["question"] for r in everything) == sorted(r["question"] for r in RETAIN)
    assert len(uld_parts(FORGET, RETAIN, retain_size=2)["retain"]) == 2
    with pytest.raises(UnlearnError, match="retain_size"):
        uld_parts(FORGET, RETAIN, retain_size="half")
    with pytest.raises(UnlearnError, match="augment_wrong"):
        uld_parts(FORGET, RETAIN, AUGMENT, wrong=-1)
    with pytest.raises(UnlearnError, match="D'r is empty"):
        uld_parts(FORGET, [])


# ------------------------------------------------------------------ loss


def test_uniform_kl_matches_definition():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 11, generator=g) * 3
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]).bool()
    logp = torch.log_softmax(logits.double(), -1)
    u = torch.full_like(logp, 1 / 11)
    per_pos = (u * (u.log() - logp)).sum(-1)  # Σ_v U_v (log U_v − log p_v)
    assert uniform_kl(logits, mask).item() == pytest.approx(per_pos[mask].mean().item(), rel=1e-5)
    assert uniform_kl(torch.zeros(1, 3, 11), torch.ones(1, 3).bool()).item() == pytest.approx(0, abs=1e-6)
    batch = {"attention_mask": mask.long(), "labels": torch.tensor([[-100, -100, 4, -100, -100],
                                                                    [-100, -100, -100, 7, 8]])}
    # "answer": positions that predict an answer token (t where labels[t+1] is set): (0,1), (1,2), (1,3)
    want = torch.stack([per_pos[0, 1], per_pos[1, 2], per_pos[1, 3]]).mean()
    assert uniform_kl_positions(logits, batch, "answer").item() == pytest.approx(want.item(), rel=1e-5)
    with pytest.raises(UnlearnError, match="kl_positions"):
        uniform_kl_positions(logits, batch, "some")


def randomise_lora_(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def test_uld_loss_by_hand_and_gradients_only_on_lora(target, tok, tmp_path):
    trainer = build_trainer("uld", target, tok, FORGET, RETAIN, {"kl_weight": 2.5}, {**TRAIN, "max_steps": 1},
                            tmp_path, augmentation=AUGMENT)
    assistant = trainer.model
    randomise_lora_(assistant)
    assistant.eval()  # no LoRA dropout, so both computations see the same function
    ds = trainer.train_dataset
    batch = PairedCollator(tok.pad_token_id)([ds[i] for i in range(4)])
    loss = trainer.compute_loss(assistant, batch)

    f, r = batch["forget"], batch["retain"]
    lf = assistant(input_ids=f["input_ids"], attention_mask=f["attention_mask"]).logits.double()
    ce = F.cross_entropy(lf[:, :-1].reshape(-1, lf.shape[-1]), f["labels"][:, 1:].reshape(-1),
                         ignore_index=IGNORE_INDEX)
    lr = torch.log_softmax(assistant(input_ids=r["input_ids"], attention_mask=r["attention_mask"]).logits
                           .double(), -1)
    kl = (-math.log(lr.shape[-1]) - lr.mean(-1))[r["attention_mask"].bool()].mean()
    assert loss.item() == pytest.approx((ce + 2.5 * kl).item(), rel=1e-5)

    loss.backward()
    with_grad = {n for n, p in assistant.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad and all("lora_" in n for n in with_grad)
    assert all("lora_" in n for n, p in assistant.named_parameters() if p.requires_grad)
    assert all(p.grad is None and not p.requires_grad for p in target.parameters())


# ------------------------------------------------------------------ short run


def forget_ce_and_retain_kl(model, tok, forget, retain):
    """Assistant's mean answer CE on D'f and KL(U ‖ p_a) over all positions of D'r (fixed full batches)."""
    col = PairedCollator(tok.pad_token_id)
    df = col([{"x": f["forget"]} for f in ForgetRetainDataset(forget, [], tok, 64)])["x"]
    dr = col([{"x": f["forget"]} for f in ForgetRetainDataset(retain, [], tok, 64)])["x"]
    with torch.no_grad():
        lf = model(input_ids=df["input_ids"], attention_mask=df["attention_mask"]).logits
        ce = F.cross_entropy(lf[:, :-1].reshape(-1, lf.shape[-1]), df["labels"][:, 1:].reshape(-1))
        lr = model(input_ids=dr["input_ids"], attention_mask=dr["attention_mask"]).logits
        return ce.item(), uniform_kl(lr, dr["attention_mask"].bool()).item()


def test_short_run_learns_forget_flattens_retain_and_leaves_target_unchanged(target, tok, tmp_path):
    before = {k: v.clone() for k, v in target.state_dict().items()}
    train = {**TRAIN, "epochs": 6, "save_every_epoch": True}
    result = unlearn("uld", target, tok, FORGET, RETAIN, None, train, out_dir=tmp_path / "run",
                     augmentation=AUGMENT)
    assistant = result.model
    assert result.method == "uld" and result.extra["num_layers"] == 1  # K = N/4 of llama-micro's 4
    assert 0 < result.trainable_params < result.total_params
    assert len(result.epoch_seconds) == 6 and result.global_steps == 18  # |D'f| = 4 + 8 -> 3 steps/epoch
    assert all(torch.equal(v, before[k]) for k, v in target.state_dict().items())
    assert all("lora_" in n for n, p in assistant.named_parameters() if p.requires_grad)

    parts = uld_parts(FORGET, RETAIN, AUGMENT)
    df, dr = parts["forget"] + parts["augment_forget"], parts["retain"] + parts["augment_retain"]
    with assistant.disable_adapter():  # LoRA B starts at 0: adapters off = the assistant before training
        ce0, kl0 = forget_ce_and_retain_kl(assistant, tok, df, dr)
    ce1, kl1 = forget_ce_and_retain_kl(assistant, tok, df, dr)
    assert ce1 < ce0 - 0.3
    assert kl1 < kl0
    logged = [h for h in result.log_history if "loss" in h]
    assert {"forget_loss", "retain_loss"} <= set(logged[0])
    assert (tmp_path / "run" / "epoch-1" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "run" / "model" / "adapter_model.safetensors").is_file()


# ------------------------------------------------------------------ provenance: what the trainer saw


@pytest.mark.parametrize("method", ["uld", "gd", "dpo"])
def test_seen_records_equal_what_the_trainer_was_fed(method, target, tok, tmp_path):
    """train_data.jsonl is written from seen_records(): it must list exactly the (question, answer)
    encodings the collator handed to the loss, each with its part."""
    aug = AUGMENT if method == "uld" else None
    params = {"retain_size": 3} if method == "uld" else None
    trainer = build_trainer(method, target, tok, FORGET, RETAIN, params, {**TRAIN, "epochs": 2}, tmp_path,
                            augmentation=aug)
    fed: dict[str, set] = {}
    collate = trainer.data_collator

    def recording(features):
        for f in features:
            for key, enc in f.items():
                fed.setdefault(key, set()).add(tuple(enc["input_ids"]))
        return collate(features)

    trainer.data_collator = recording
    trainer.train()
    seen = trainer.train_dataset.seen_records()
    encode = {r["part"]: set() for r in seen}
    for r in seen:
        encode[r["part"]].add(tuple(trainer.train_dataset._encode(r["question"], r["answer"])["input_ids"]))
    side = {"forget": "forget", "augment_forget": "forget", "retain": "retain", "augment_retain": "retain",
            "refusal": "forget_idk"}
    for key in fed:
        assert fed[key] == set().union(*(v for part, v in encode.items() if side[part] == key))
    parts = {r["part"] for r in seen}
    expected = {"uld": {"forget", "augment_forget", "retain", "augment_retain"}, "gd": {"forget", "retain"},
                "dpo": {"forget", "refusal"}}[method]
    assert parts == expected
    if method == "uld":
        n_aug = sum(len(r["paraphrased_answers"]) for r in AUGMENT)
        assert sum(r["part"] == "augment_forget" for r in seen) == n_aug
        assert sum(r["part"] == "retain" for r in seen) == 3
