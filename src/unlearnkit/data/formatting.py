"""Prompt/answer formatting and collation shared by training and evaluation.

The prompt and the answer are tokenized separately and concatenated, so the label mask covers exactly
the prompt tokens whatever the tokenizer does at the boundary. The answer is followed by EOS, which
counts as an answer token (as in TOFU/open-unlearning).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

IGNORE_INDEX = -100
PLAIN_TEMPLATE = "Question: {question}\nAnswer:"


def build_prompt(tokenizer, question: str) -> str:
    """The text before the answer: the chat template when the tokenizer has one, a plain one otherwise."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
    return PLAIN_TEMPLATE.format(question=question)


def answer_text(tokenizer, answer: str) -> str:
    """Plain prompts end in 'Answer:', so the answer starts with a space; chat prompts end in a newline."""
    return answer if getattr(tokenizer, "chat_template", None) else " " + answer


def prompt_ids(tokenizer, question: str) -> list[int]:
    """Token ids of the prompt alone (what generation is conditioned on)."""
    text = build_prompt(tokenizer, question)
    # Chat templates already contain any BOS they want; plain prompts get the tokenizer's specials.
    add_special = not getattr(tokenizer, "chat_template", None)
    return tokenizer(text, add_special_tokens=add_special)["input_ids"]


# An answer longer than max_length * this many characters is cut before tokenizing: no tokenizer's
# tokens average 64 characters, so the kept text still fills max_length tokens.
MAX_CHARS_PER_TOKEN = 64


@dataclass
class TruncationCounter:
    """Counts examples cut at max_length so truncation is reported, never silent."""

    truncated: int = 0
    total: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, was_truncated: bool, question: str) -> None:
        self.total += 1
        if was_truncated:
            self.truncated += 1
            if len(self.examples) < 3:
                self.examples.append(question[:80])


def encode_qa(
    tokenizer,
    question: str,
    answer: str,
    max_length: int = 512,
    counter: TruncationCounter | None = None,
) -> dict[str, list[int]]:
    """input_ids = prompt + answer + EOS; labels are -100 on the prompt, the answer ids (EOS included) after.

    When too long, the answer is cut from the end (the prompt is kept whole); when even the prompt does
    not fit, the error says so, since no answer token would be left to train or score.
    """
    cut = len(answer) > max_length * MAX_CHARS_PER_TOKEN  # never tokenize megabytes to keep 256 tokens
    answer = answer[: max_length * MAX_CHARS_PER_TOKEN]
    p_ids = prompt_ids(tokenizer, question[: max_length * MAX_CHARS_PER_TOKEN + 1])
    a_ids = tokenizer(answer_text(tokenizer, answer), add_special_tokens=False)["input_ids"]
    a_ids = a_ids + [tokenizer.eos_token_id]
    if len(p_ids) >= max_length:
        from unlearnkit.errors import UnlearnError

        raise UnlearnError(
            f"max_length={max_length} is shorter than the prompt ({len(p_ids)} tokens) of question "
            f"{question[:60]!r}: raise max_length"
        )
    truncated = cut or len(p_ids) + len(a_ids) > max_length
    a_ids = a_ids[: max_length - len(p_ids)]
    if counter is not None:
        counter.add(truncated, question)
    ids = p_ids + a_ids
    return {
        "input_ids": ids,
        "attention_mask": [1] * len(ids),
        "labels": [IGNORE_INDEX] * len(p_ids) + a_ids,
    }


def pad_batch(
    features: list[dict[str, list[int]]],
    pad_token_id: int,
    padding_side: str = "right",
) -> dict[str, torch.Tensor]:
    """Pad input_ids/attention_mask/labels (whichever are present) to the longest, on either side."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    longest = max(len(f["input_ids"]) for f in features)
    pad_values = {"input_ids": pad_token_id, "attention_mask": 0, "labels": IGNORE_INDEX}
    batch: dict[str, torch.Tensor] = {}
    for key, pad in pad_values.items():
        if key not in features[0]:
            continue
        rows = []
        for f in features:
            fill = [pad] * (longest - len(f[key]))
            rows.append(f[key] + fill if padding_side == "right" else fill + f[key])
        batch[key] = torch.tensor(rows, dtype=torch.long)
    return batch


@dataclass
class QACollator:
    """Collator for encoded QA features; use as a Trainer data_collator. `extra_keys` are per-example
    integers (e.g. a domain id) passed through as a (B,) tensor."""

    pad_token_id: int
    padding_side: str = "right"
    extra_keys: tuple[str, ...] = ()

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        keep = ("input_ids", "attention_mask", "labels")
        batch = pad_batch([{k: f[k] for k in keep if k in f} for f in features],
                          self.pad_token_id, self.padding_side)
        for key in self.extra_keys:
            batch[key] = torch.tensor([f[key] for f in features], dtype=torch.long)
        return batch
