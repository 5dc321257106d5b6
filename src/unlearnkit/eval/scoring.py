"""Per-sample answer likelihoods and greedy generations, batched and independent of padding.

Every TOFU metric reduces to two primitives: the average negative log-likelihood of an answer given a
question (answer tokens and the trailing EOS, as in open-unlearning's `evaluate_probability`), and a
greedy answer. Both sort inputs by length so batches carry little padding, then restore input order.
Anything with a HF-style forward returning `.logits` works (ULD's logit-difference model included).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from unlearnkit.data.formatting import (
    IGNORE_INDEX,
    TruncationCounter,
    decode_generation,
    encode_qa,
    pad_batch,
    prompt_ids,
)

Callback = Callable[[int], None] | None


def _pad_id(tokenizer) -> int:
    pad = tokenizer.pad_token_id
    return tokenizer.eos_token_id if pad is None else pad


def _device(model) -> torch.device:
    dev = getattr(model, "device", None)
    if isinstance(dev, torch.device):
        return dev
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first, so memory peaks early)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count only real tokens, so a left-padded row sees the same positions as unpadded."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


@torch.no_grad()
def batch_answer_nll(model, batch: dict[str, torch.Tensor], padding_side: str = "right") -> torch.Tensor:
    """Average NLL over labelled tokens, per row, from one forward pass (float32 log-softmax).

    Only labelled positions go through the log-softmax: padded positions may hold NaN logits on some
    attention backends, and selecting (rather than multiplying by a mask) keeps them out of the sums.
    """
    device = _device(model)
    input_ids = batch["input_ids"].to(device)
    attention_mask = batch["attention_mask"].to(device)
    labels = batch["labels"].to(device)
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if padding_side == "left":
        kwargs["position_ids"] = positions_from_mask(attention_mask)
    logits = model(**kwargs).logits[:, :-1, :]
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    logp = F.log_softmax(logits[keep].float(), dim=-1)
    token_nll = -logp.gather(-1, targets[keep].unsqueeze(-1)).squeeze(-1)
    rows = keep.nonzero(as_tuple=True)[0]
    sums = torch.zeros(labels.shape[0], dtype=torch.float32, device=device).index_add_(0, rows, token_nll)
    counts = keep.sum(-1)
    return (sums / counts).cpu()


@torch.no_grad()
def batch_token_stats(model, batch: dict[str, torch.Tensor], padding_side: str = "right") -> list[dict]:
    """Per row, from one forward: the average NLL over labelled tokens (as `batch_answer_nll`) and, for
    the labelled tokens but the last (open-unlearning's `tokenwise_logprobs` leave out the final EOS
    prediction), the token log-prob, the min-k++ z-score `(log p - mu) / sigma` under the predicted
    distribution, and whether the argmax is the label.
    """
    device = _device(model)
    input_ids = batch["input_ids"].to(device)
    attention_mask = batch["attention_mask"].to(device)
    labels = batch["labels"].to(device)
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if padding_side == "left":
        kwargs["position_ids"] = positions_from_mask(attention_mask)
    logits = model(**kwargs).logits[:, :-1, :]
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    logp_all = F.log_softmax(logits[keep].float(), dim=-1)
    tgt = targets[keep]
    logp = logp_all.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
    probs = logp_all.exp()
    mu = (probs * logp_all).sum(-1)
    sigma = ((probs * logp_all.square()).sum(-1) - mu.square()).clamp(min=1e-6)
    z = (logp - mu) / sigma.sqrt()
    match = logp_all.argmax(-1) == tgt
    rows = keep.nonzero(as_tuple=True)[0]
    out = []
    for r in range(labels.shape[0]):
        sel = rows == r
        lp, zz, mm = logp[sel].tolist(), z[sel].tolist(), match[sel].tolist()
        out.append({"avg_loss": float(-logp[sel].sum() / max(int(sel.sum()), 1)),
                    "token_logp": lp[:-1], "token_z": zz[:-1], "argmax_match": mm[:-1],
                    "label_ids": tgt[sel].tolist()})
    return out


def answer_token_stats(
    model,
    tokenizer,
    pairs: list[tuple[str, str]],
    batch_size: int = 16,
    max_length: int = 512,
    padding_side: str = "right",
    callback: Callback = None,
) -> list[dict]:
    """`batch_token_stats` of each (question, answer) pair, in input order (length-sorted batches)."""
    if not pairs:
        return []
    counter = TruncationCounter()
    feats = [encode_qa(tokenizer, q, a, max_length, counter) for q, a in pairs]
    if counter.truncated:
        warnings.warn(f"{counter.truncated}/{counter.total} answers cut at max_length={max_length} "
                      f"(e.g. {counter.examples[0]!r}): raise max_length", stacklevel=2)
    pad_id = _pad_id(tokenizer)
    out: list[dict] = [{}] * len(feats)
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        for idx in _length_batches([len(f["input_ids"]) for f in feats], batch_size):
            batch = pad_batch([feats[i] for i in idx], pad_id, padding_side)
            for i, v in zip(idx, batch_token_stats(model, batch, padding_side), strict=True):
                out[i] = v
            if callback is not None:
                callback(len(idx))
    finally:
        if was_training:
            model.train()
    return out


def answer_nll(
    model,
    tokenizer,
    pairs: list[tuple[str, str]],
    batch_size: int = 16,
    max_length: int = 512,
    padding_side: str = "right",
    callback: Callback = None,
) -> list[float]:
    """Average answer-token NLL (EOS counted) of each (question, answer) pair; prob = exp(-nll)."""
    if not pairs:
        return []
    counter = TruncationCounter()
    feats = [encode_qa(tokenizer, q, a, max_length, counter) for q, a in pairs]
    if counter.truncated:  # scored on a cut answer: say so rather than report a silently different number
        warnings.warn(f"{counter.truncated}/{counter.total} answers cut at max_length={max_length} "
                      f"(e.g. {counter.examples[0]!r}): raise max_length", stacklevel=2)
    pad_id = _pad_id(tokenizer)
    out: list[float] = [0.0] * len(feats)
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        for idx in _length_batches([len(f["input_ids"]) for f in feats], batch_size):
            batch = pad_batch([feats[i] for i in idx], pad_id, padding_side)
            for i, v in zip(idx, batch_answer_nll(model, batch, padding_side).tolist(), strict=True):
                out[i] = v
            if callback is not None:
                callback(len(idx))
    finally:
        if was_training:
            model.train()
    return out


def answer_nll_multi(
    model,
    tokenizer,
    questions: list[str],
    answer_lists: list[list[str]],
    batch_size: int = 16,
    max_length: int = 512,
    padding_side: str = "right",
    callback: Callback = None,
) -> list[list[float]]:
    """Several answers per question (e.g. TOFU's perturbed answers), scored in one flattened batched pass.

    The callback advances by questions (not answers), so a progress bar sized by questions ends at 100 %.
    """
    if len(questions) != len(answer_lists):
        raise ValueError(f"{len(questions)} questions but {len(answer_lists)} answer lists")
    pairs = [(q, a) for q, answers in zip(questions, answer_lists, strict=True) for a in answers]
    sizes = [len(a) for a in answer_lists]
    flat_cb = None
    if callback is not None:
        total = max(len(pairs), 1)
        done = {"answers": 0, "reported": 0}

        def flat_cb(n: int) -> None:  # convert answers done into questions done
            done["answers"] += n
            now = done["answers"] * len(questions) // total
            callback(now - done["reported"])
            done["reported"] = now

    flat = answer_nll(model, tokenizer, pairs, batch_size, max_length, padding_side, flat_cb)
    out, start = [], 0
    for n in sizes:
        out.append(flat[start : start + n])
        start += n
    return out


@torch.no_grad()
def generate_answers(
    model,
    tokenizer,
    questions: list[str],
    batch_size: int = 16,
    max_new_tokens: int = 200,
    callback: Callback = None,
) -> list[str]:
    """Greedy answers (stop at EOS), batched with left padding; only the new tokens are decoded."""
    if not questions:
        return []
    prompts = [prompt_ids(tokenizer, q) for q in questions]
    pad_id, eos_id = _pad_id(tokenizer), tokenizer.eos_token_id
    device = _device(model)
    out: list[str] = [""] * len(prompts)
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        for idx in _length_batches([len(p) for p in prompts], batch_size):
            feats = [{"input_ids": prompts[i], "attention_mask": [1] * len(prompts[i])} for i in idx]
            batch = pad_batch(feats, pad_id, "left")
            input_ids = batch["input_ids"].to(device)
            gen = model.generate(
                input_ids=input_ids,
                attention_mask=batch["attention_mask"].to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=pad_id,
                eos_token_id=eos_id,
            )
            for i, row in zip(idx, gen[:, input_ids.shape[1] :].tolist(), strict=True):
                out[i] = decode_generation(tokenizer, row)
            if callback is not None:
                callback(len(idx))
    finally:
        if was_training:
            model.train()
    return out
