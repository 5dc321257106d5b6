"""Multiple-choice scoring: file layouts (WMDP/MMLU), option/letter log-likelihoods by hand, accuracy."""

from __future__ import annotations

import json

import pytest
import torch

from unlearnkit.data.formatting import answer_text, prompt_ids
from unlearnkit.data.world_tokenizer import train_tokenizer
from unlearnkit.errors import UnlearnError
from unlearnkit.eval.mcq import (
    choice_logprobs,
    evaluate_domains,
    letter_question,
    load_domain_sets,
    load_mcq,
    mcq_accuracy,
)
from unlearnkit.models.presets import build_preset

torch.set_num_threads(1)

ITEMS = [
    {"question": "What color are the crystals of Borite?",
     "choices": ["violet", "amber", "deep ochre", "teal"], "answer": 2},
    {"question": "Which star does Zarn orbit?",
     "choices": ["Kessra", "Oleph", "Vauntis", "Myrrak"], "answer": 0},
    {"question": "Where does Velmora grow?",
     "choices": ["salt marshes", "peat bogs", "river deltas", "dunes"], "answer": 3},
]


@pytest.fixture(scope="module")
def tok():
    texts = [it["question"] + " " + " ".join(it["choices"]) for it in ITEMS] * 3
    return train_tokenizer(texts + ["A B C D Answer: Question:"] * 3, 300)


@pytest.fixture(scope="module")
def model(tok):
    return build_preset("llama-micro", tok, seed=0).eval()


def _by_hand(model, tok, prompt: list[int], cont: list[int]) -> float:
    """Sum of log p(cont token | prefix), one unpadded forward."""
    ids = torch.tensor([prompt + cont])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1)
    return sum(logp[len(prompt) - 1 + i, t].item() for i, t in enumerate(cont))


@pytest.mark.parametrize("norm", ["sum", "mean"])
def test_option_scores_equal_hand_computation(model, tok, norm):
    scores = choice_logprobs(model, tok, ITEMS, mode="option", norm=norm, batch_size=5)
    for item, row in zip(ITEMS, scores, strict=True):
        prompt = prompt_ids(tok, item["question"])
        for choice, got in zip(item["choices"], row, strict=True):
            cont = tok(answer_text(tok, choice), add_special_tokens=False)["input_ids"]
            want = _by_hand(model, tok, prompt, cont)
            assert got == pytest.approx(want / (len(cont) if norm == "mean" else 1), abs=1e-4)


def test_letter_scores_equal_hand_computation(model, tok):
    scores = choice_logprobs(model, tok, ITEMS[:1], mode="letter", norm="sum")
    body = letter_question(ITEMS[0]["question"], ITEMS[0]["choices"])
    assert body.splitlines()[1:] == ["A. violet", "B. amber", "C. deep ochre", "D. teal"]
    prompt = prompt_ids(tok, body)
    for letter, got in zip("ABCD", scores[0], strict=True):
        cont = tok(answer_text(tok, letter), add_special_tokens=False)["input_ids"]
        assert got == pytest.approx(_by_hand(model, tok, prompt, cont), abs=1e-4)


def test_batching_does_not_change_scores(model, tok):
    a = choice_logprobs(model, tok, ITEMS, batch_size=1)
    b = choice_logprobs(model, tok, ITEMS, batch_size=12)
    assert torch.allclose(torch.tensor(a), torch.tensor(b), atol=1e-4)


def test_accuracy_is_argmax_of_scores(model, tok):
    res = mcq_accuracy(model, tok, ITEMS)
    preds = [max(range(4), key=s.__getitem__) for s in res["scores"]]
    assert res["predictions"] == preds
    hits = sum(p == it["answer"] for p, it in zip(preds, ITEMS, strict=True))
    assert res["accuracy"] == pytest.approx(hits / 3)
    assert res["chance"] == 0.25 and res["n"] == 3


def test_trained_model_answers_and_domains_summary(tok):
    """A model trained on the correct answers (question + ' ' + answer) scores 100 % on them."""
    from unlearnkit.finetune import finetune, finetune_settings

    model = build_preset("llama-micro", tok, seed=0)
    records = [{"question": it["question"], "answer": it["choices"][it["answer"]]} for it in ITEMS]
    settings = finetune_settings(epochs=40, lr=1e-2, batch_size=3, warmup=0)
    finetune(model, tok, records, settings, progress=False)
    summary = evaluate_domains(model, tok, {"forget": ITEMS[:1], "other": ITEMS[1:]}, forget="forget")
    assert summary["accuracy"] == {"forget": 1.0, "other": 1.0}
    assert summary["forget_accuracy"] == 1.0 and summary["utility_accuracy"] == 1.0


def test_load_wmdp_and_mmlu_layouts(tmp_path):
    wmdp = tmp_path / "wmdp.jsonl"
    wmdp.write_text("\n".join(json.dumps(it) for it in ITEMS))
    assert [it["answer"] for it in load_mcq(wmdp)] == [2, 0, 3]
    mmlu = tmp_path / "mmlu.json"
    mmlu.write_text(json.dumps({"test": [{"question": "2+2?", "choices": ["3", "4", "5", "6"], "answer": "B",
                                          "subject": "math"}]}))
    item = load_mcq(mmlu)[0]
    assert item["answer"] == 1 and item["subject"] == "math"
    (tmp_path / "mcq_alpha.jsonl").write_text(wmdp.read_text())
    assert list(load_domain_sets(tmp_path)) == ["alpha"]


def test_bad_files_are_user_errors(tmp_path, model, tok):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "choices": ["a", "b"]}))
    with pytest.raises(UnlearnError, match="needs 'question', 'choices'"):
        load_mcq(bad)
    bad.write_text(json.dumps({"question": "q", "choices": ["a", "b"], "answer": 5}))
    with pytest.raises(UnlearnError, match="out of range"):
        load_mcq(bad)
    with pytest.raises(UnlearnError, match="does not exist"):
        load_mcq(tmp_path / "nope.jsonl")
    with pytest.raises(UnlearnError, match="unknown MC mode"):
        choice_logprobs(model, tok, ITEMS, mode="cloze")
