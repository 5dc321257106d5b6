"""Forget/retain training data for unlearning: paired datasets and the paired collator.

Every item pairs one forget example with one retain example so a batch holds both in equal numbers
(as in open-unlearning's ForgetRetainDataset). The dataset's length is the forget set's; the retain
partner of item i is fixed by a seeded permutation and shifts by one forget-set length per epoch, so
several epochs walk through more of a large retain set while staying deterministic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch

from unlearnkit.data.formatting import TruncationCounter, encode_qa, pad_batch
from unlearnkit.data.jsonl import read_utf8
from unlearnkit.errors import UnlearnError

# Refusal answers for DPO/IdK (the preferred response). Same spirit as TOFU's idontknow.jsonl.
REFUSALS: tuple[str, ...] = (
    "I don't know.",
    "I'm not sure.",
    "I have no idea.",
    "I'm not aware of that.",
    "I don't have that information.",
    "I can't answer that.",
    "That's something I don't know.",
    "I'm unable to answer that question.",
    "I don't have any knowledge about that.",
    "Sorry, I don't know the answer to that.",
    "I'm afraid I can't help with that question.",
    "I haven't come across that information.",
    "That is beyond my knowledge.",
    "I really couldn't say.",
    "I'm not familiar with that.",
    "I don't have enough information to answer.",
    "I can't recall anything about that.",
    "I have no knowledge of that.",
    "Unfortunately, I don't know.",
    "I'm not the right source for that answer.",
)


def load_refusals(path: str | Path | None = None) -> list[str]:
    """The built-in refusals, or one refusal per non-empty line of a text file."""
    if path is None:
        return list(REFUSALS)
    path = Path(path)
    if not path.is_file():
        raise UnlearnError(f"refusal file {path} does not exist: give a text file with one refusal per line")
    lines = [line.strip() for line in read_utf8(path).splitlines() if line.strip()]
    if not lines:
        raise UnlearnError(f"refusal file {path} is empty: put one refusal answer per line")
    return lines


class ForgetRetainDataset(torch.utils.data.Dataset):
    """Items {"forget": encoded, "retain": encoded[, "forget_idk": encoded]}; length = len(forget).

    `retain` may be empty (pure forget methods such as GA): items then carry no "retain" key.
    With `refusals`, each forget question is also encoded with a refusal answer ("forget_idk", the
    preferred response of DPO/IdK), chosen per item from a seeded generator. `forget_parts` /
    `retain_parts` name each record's part (default "forget" / "retain"); `seen_records()` lists the
    records served so far with their part (what a run writes to train_data.jsonl).
    """

    def __init__(
        self,
        forget: list[dict],
        retain: list[dict],
        tokenizer,
        max_length: int = 512,
        seed: int = 0,
        refusals: list[str] | None = None,
        counter: TruncationCounter | None = None,
        forget_parts: list[str] | None = None,
        retain_parts: list[str] | None = None,
    ):
        if not forget:
            raise UnlearnError("the forget set is empty: give at least one forget example")
        self.forget, self.retain = list(forget), list(retain)
        self.tokenizer, self.max_length, self.seed = tokenizer, max_length, seed
        self.counter = counter if counter is not None else TruncationCounter()
        self.epoch = 0
        self.forget_parts = list(forget_parts or ["forget"] * len(self.forget))
        self.retain_parts = list(retain_parts or ["retain"] * len(self.retain))
        if len(self.forget_parts) != len(self.forget) or len(self.retain_parts) != len(self.retain):
            raise ValueError("one part name per record is needed")
        self._seen_forget: set[int] = set()
        self._seen_retain: set[int] = set()
        self._retain_order = list(range(len(self.retain)))
        random.Random(seed).shuffle(self._retain_order)
        self._forget_enc = [self._encode(r["question"], r["answer"]) for r in self.forget]
        self._retain_enc: dict[int, dict] = {}
        self._idk_enc = self._idk_answers = None
        if refusals is not None:
            if not refusals:
                raise UnlearnError("the refusal list is empty: give at least one refusal answer")
            rng = random.Random(seed + 1)
            self._idk_answers = [rng.choice(refusals) for _ in self.forget]
            self._idk_enc = [self._encode(r["question"], a) for r, a in zip(self.forget, self._idk_answers,
                                                                            strict=True)]

    def _encode(self, question: str, answer: str) -> dict[str, list[int]]:
        return encode_qa(self.tokenizer, question, answer, self.max_length, self.counter)

    def set_epoch(self, epoch: int) -> None:
        """Called by accelerate at each epoch: shifts which retain example pairs with each forget one."""
        self.epoch = int(epoch)

    def retain_index(self, i: int) -> int:
        """Index into `retain` of the partner of forget item i in the current epoch."""
        return self._retain_order[(i + self.epoch * len(self.forget)) % len(self.retain)]

    def __len__(self) -> int:
        return len(self.forget)

    def __getitem__(self, i: int) -> dict[str, dict[str, list[int]]]:
        item = {"forget": self._forget_enc[i]}
        self._seen_forget.add(i)
        if self.retain:
            j = self.retain_index(i)
            self._seen_retain.add(j)
            if j not in self._retain_enc:  # encode lazily: retain sets can be 10x the forget set
                self._retain_enc[j] = self._encode(self.retain[j]["question"], self.retain[j]["answer"])
            item["retain"] = self._retain_enc[j]
        if self._idk_enc is not None:
            item["forget_idk"] = self._idk_enc[i]
        return item

    def seen_records(self) -> list[dict]:
        """Every record served so far, once, with its part: forget-side, then refusals, then retain."""
        rows = [{"question": self.forget[i]["question"], "answer": self.forget[i]["answer"],
                 "part": self.forget_parts[i]} for i in sorted(self._seen_forget)]
        if self._idk_answers is not None:
            rows += [{"question": self.forget[i]["question"], "answer": self._idk_answers[i],
                      "part": "refusal"} for i in sorted(self._seen_forget)]
        rows += [{"question": self.retain[j]["question"], "answer": self.retain[j]["answer"],
                  "part": self.retain_parts[j]} for j in sorted(self._seen_retain)]
        return rows


@dataclass
class PairedCollator:
    """Pads each part of paired items separately: {"forget": batch, "retain": batch, ...}."""

    pad_token_id: int
    padding_side: str = "right"

    def __call__(self, features: list[dict]) -> dict[str, dict[str, torch.Tensor]]:
        return {key: pad_batch([f[key] for f in features], self.pad_token_id, self.padding_side)
                for key in features[0]}


def merge_perturbed(forget: list[dict], perturbed: list[dict]) -> list[dict]:
    """Add paraphrased/perturbed answers from a *_perturbed split to forget records, matched by question."""
    by_question = {r["question"]: r for r in perturbed}
    merged = []
    for record in forget:
        extra = by_question.get(record["question"], {})
        merged.append({**extra, **record})
    return merged
