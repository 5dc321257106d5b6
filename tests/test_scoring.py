"""Scoring core: answer NLL against hand computation; batch-size, padding-side and batching invariance."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import BigramModel, bigram_probs, word_tokenizer

from unlearnkit.eval.scoring import (
    answer_nll,
    answer_nll_multi,
    answer_nll_shared,
    answer_token_stats,
    generate_answers,
)
from unlearnkit.models.presets import build_preset

torch.set_num_threads(1)

WORDS = ("Question Answer : ? . who wrote the book author it cat sat on mat paris is in france "
         "a small red fox ran over hill and river city born year").split()


def hand_nll(tok, probs: torch.Tensor, question: str, answer: str) -> float:
    """Mean over answer tokens (EOS included) of -log P[previous, token], with the plain prompt."""
    prompt = tok(f"Question: {question}\nAnswer:")["input_ids"]
    ans = tok(" " + answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    seq = prompt + ans
    start = len(prompt)
    terms = [-math.log(float(probs[seq[i - 1], seq[i]])) for i in range(start, len(seq))]
    return sum(terms) / len(terms)


PAIRS = [
    ("who wrote the book ?", "the author wrote it ."),
    ("the cat", "sat on the mat"),
    ("paris", "is in france"),
    ("a small red fox", "ran over the hill and the river to the city"),
    ("born", "year"),
]


@pytest.fixture(scope="module")
def tok():
    """Its own small vocabulary (ids known, so NLLs can be computed by hand): the batching tolerances
    below (1e-5) hold for this model size."""
    return word_tokenizer(WORDS)


def test_answer_nll_matches_hand_computation(tok):
    probs = bigram_probs(len(tok))
    model = BigramModel(probs)
    got = answer_nll(model, tok, PAIRS, batch_size=2)
    want = [hand_nll(tok, probs, q, a) for q, a in PAIRS]
    assert got == pytest.approx(want, abs=1e-5)
    assert len(set(round(v, 4) for v in got)) == len(PAIRS)  # distinct values: order really restored


def test_answer_nll_multi_matches_flat(tok):
    model = BigramModel(bigram_probs(len(tok), seed=1))
    questions = ["who wrote the book ?", "paris"]
    answers = [["the author wrote it .", "the cat wrote it", "a fox"], ["is in france", "city"]]
    seen = []
    got = answer_nll_multi(model, tok, questions, answers, batch_size=3, callback=seen.append)
    pairs = [(q, a) for q, al in zip(questions, answers, strict=True) for a in al]
    flat = answer_nll(model, tok, pairs, batch_size=1)
    assert [len(x) for x in got] == [3, 2]
    assert got[0] + got[1] == pytest.approx(flat, abs=1e-6)
    assert sum(seen) == len(questions)


@pytest.fixture(scope="module")
def llama(tok):
    model = build_preset("llama-micro", tok, seed=0)
    with torch.no_grad():  # larger weights than the init: prompt-dependent, non-degenerate greedy outputs
        g = torch.Generator().manual_seed(1)
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model.eval()


def test_nll_independent_of_batch_size_and_padding_side(tok, llama):
    pairs = PAIRS * 4
    ref = answer_nll(llama, tok, pairs, batch_size=1)
    for bs, side in [(16, "right"), (16, "left"), (3, "left"), (7, "right")]:
        got = answer_nll(llama, tok, pairs, batch_size=bs, padding_side=side)
        assert max(abs(a - b) for a, b in zip(got, ref, strict=True)) <= 1e-5, (bs, side)
    # and a real model scores different answers differently
    assert max(ref) - min(ref) > 0.1


def test_shared_prompt_scoring_equals_flat(tok, llama):
    """Prompt run once, KV cache shared by its answers: the same NLLs as one-by-one scoring (<= 1e-5)."""
    questions = [q for q, _ in PAIRS]
    answers = [[a, "the cat sat", "a fox ran over the hill"] for _, a in PAIRS]
    answers[2] = ["city"]  # uneven answer counts per question
    ref = [[answer_nll(llama, tok, [(q, a)], batch_size=1)[0] for a in al]
           for q, al in zip(questions, answers, strict=True)]
    for bs in (1, 4, 16):
        seen = []
        got = answer_nll_shared(llama, tok, questions, answers, batch_size=bs, callback=seen.append)
        assert [len(x) for x in got] == [len(x) for x in answers]
        diff = max(abs(a - b) for g, r in zip(got, ref, strict=True) for a, b in zip(g, r, strict=True))
        assert diff <= 1e-5, bs
        assert sum(seen) == len(questions)


def test_token_stats_agree_with_nll_and_batching(tok, llama):
    """The one-forward statistics (loss, min-k inputs, argmax matches) do not depend on batching."""
    ref = answer_token_stats(llama, tok, PAIRS, batch_size=1)
    nll = answer_nll(llama, tok, PAIRS, batch_size=1)
    for bs, side in [(16, "right"), (2, "left")]:
        got = answer_token_stats(llama, tok, PAIRS, batch_size=bs, padding_side=side)
        for g, r, n in zip(got, ref, nll, strict=True):
            assert abs(g["avg_loss"] - n) <= 1e-5 and abs(r["avg_loss"] - n) <= 1e-5
            assert g["token_logp"] == pytest.approx(r["token_logp"], abs=1e-5)
            assert g["token_z"] == pytest.approx(r["token_z"], abs=1e-4)
            assert g["argmax_match"] == r["argmax_match"] and g["label_ids"] == r["label_ids"]
            assert len(g["token_logp"]) == len(g["label_ids"]) - 1  # the final EOS prediction left out


def test_batched_greedy_generation_equals_one_by_one(tok, llama):
    questions = [q for q, _ in PAIRS] + ["the", "france is a city ?"]
    single = generate_answers(llama, tok, questions, batch_size=1, max_new_tokens=10)
    batched = generate_answers(llama, tok, questions, batch_size=16, max_new_tokens=10)
    assert batched == single
    assert len(set(single)) > 1 and all("<pad>" not in s and "<eos>" not in s for s in single)


def test_generation_cuts_at_first_eos(tok, llama):
    """A generate() that writes 'city', EOS, then more tokens: only 'city' may come back."""
    eos, city = tok.eos_token_id, tok.convert_tokens_to_ids("city")

    class CityThenEos(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def generate(self, input_ids, attention_mask, max_new_tokens, **kw):
            out = input_ids
            for step in range(max_new_tokens):
                logits = self.inner(input_ids=out, attention_mask=torch.ones_like(out)).logits[:, -1]
                logits[:, city if step == 0 else eos] += 1e4 if step < 2 else 0.0
                logits[:, eos] -= 1e4 if step >= 2 else 0.0  # tokens after EOS are not pad: must be cut
                out = torch.cat([out, logits.argmax(-1, keepdim=True)], dim=1)
            return out

    got = generate_answers(CityThenEos(llama), tok, ["who wrote the book ?", "paris"], max_new_tokens=6)
    assert got == ["city", "city"]


def test_uld_logit_difference_model_scores_and_generates(tok, llama):
    """ULD's z_t - w z_a model goes through the same padding-safe paths (forward + generate)."""
    from unlearnkit.methods.uld.assistant import build_assistant
    from unlearnkit.methods.uld.model import ULDModel

    uld = ULDModel.from_target(llama, build_assistant(llama, num_layers=1), weight=0.8).eval()
    ref = answer_nll(uld, tok, PAIRS, batch_size=1)
    left = answer_nll(uld, tok, PAIRS, batch_size=16, padding_side="left")
    assert max(abs(a - b) for a, b in zip(ref, left, strict=True)) <= 1e-5
    assert ref != pytest.approx(answer_nll(llama, tok, PAIRS), abs=1e-3)  # the assistant term matters
    questions = [q for q, _ in PAIRS]
    single = generate_answers(uld, tok, questions, batch_size=1, max_new_tokens=6)
    assert generate_answers(uld, tok, questions, batch_size=8, max_new_tokens=6) == single
    shared = answer_nll_shared(uld, tok, questions, [[a, "the cat sat"] for _, a in PAIRS], batch_size=4)
    flat = [answer_nll(uld, tok, [(q, a), (q, "the cat sat")], batch_size=1) for q, a in PAIRS]
    pairs = [(x, y) for s, f in zip(shared, flat, strict=True) for x, y in zip(s, f, strict=True)]
    assert max(abs(x - y) for x, y in pairs) <= 1e-5
