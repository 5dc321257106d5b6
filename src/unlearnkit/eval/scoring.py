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
    logp, targets, keep = _labelled_log_softmax(model, batch, padding_side)
    token_nll = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    rows = keep.nonzero(as_tuple=True)[0]
    sums = torch.zeros(keep.shape[0], dtype=torch.float32, device=keep.device).index_add_(0, rows, token_nll)
    counts = keep.sum(-1)
    return (sums / counts).cpu()


def _labelled_log_softmax(model, batch: dict[str, torch.Tensor], padding_side: str):
    """One forward: fp32 log-softmax at the labelled next-token positions only, their targets, and the
    (rows, positions) mask of those positions."""
    device = _device(model)
    attention_mask = batch["attention_mask"].to(device)
    kwargs = {"input_ids": batch["input_ids"].to(device), "attention_mask": attention_mask}
    if padding_side == "left":
        kwargs["position_ids"] = positions_from_mask(attention_mask)
    logits = model(**kwargs).logits[:, :-1, :]
    targets = batch["labels"].to(device)[:, 1:]
    keep = targets != IGNORE_INDEX
    return F.log_softmax(logits[keep].float(), dim=-1), targets[keep], keep


@torch.no_grad()
def batch_token_stats(model, batch: dict[str, torch.Tensor], padding_side: str = "right") -> list[dict]:
    """Per row, from one forward: the average NLL over labelled tokens (as `batch_answer_nll`) and, for
    the labelled tokens but the last (open-unlearning's `tokenwise_logprobs` leave out the final EOS
    prediction), the token log-prob, the min-k++ z-score `(log p - mu) / sigma` under the predicted
    distribution, and whether the argmax is the label.
    """
    logp_all, tgt, keep = _labelled_log_softmax(model, batch, padding_side)
    logp = logp_all.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
    probs = logp_all.exp()
    mu = (probs * logp_all).sum(-1)
    sigma = ((probs * logp_all.square()).sum(-1) - mu.square()).clamp(min=1e-6)
    z = (logp - mu) / sigma.sqrt()
    match = logp_all.argmax(-1) == tgt
    rows = keep.nonzero(as_tuple=True)[0]
    out = []
    for r in range(keep.shape[0]):
        sel = rows == r
        lp, zz, mm = logp[sel].tolist(), z[sel].tolist(), match[sel].tolist()
        out.append({"avg_loss": float(-logp[sel].sum() / max(int(sel.sum()), 1)),
                    "token_logp": lp[:-1], "token_z": zz[:-1], "argmax_match": mm[:-1],
                    "label_ids": tgt[sel].tolist()})
    return out


def _score_pairs(model, tokenizer, pairs: list[tuple[str, str]], batch_size: int, max_length: int,
                 padding_side: str, callback: Callback, score_batch) -> list:
    """score_batch(model, padded batch, padding_side) -> one value per row, for each (question, answer)
    pair in input order; batches are length-sorted, a cut answer is warned about, the model's mode kept."""
    if not pairs:
        return []
    counter = TruncationCounter()
    feats = [encode_qa(tokenizer, q, a, max_length, counter) for q, a in pairs]
    if counter.truncated:  # scored on a cut answer: say so rather than report a silently different number
        warnings.warn(f"{counter.truncated}/{counter.total} answers cut at max_length={max_length} "
                      f"(e.g. {counter.examples[0]!r}): raise max_length", stacklevel=2)
    pad_id = _pad_id(tokenizer)
    out: list = [None] * len(feats)
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        for idx in _length_batches([len(f["input_ids"]) for f in feats], batch_size):
            batch = pad_batch([feats[i] for i in idx], pad_id, padding_side)
            for i, v in zip(idx, score_batch(model, batch, padding_side), strict=True):
                out[i] = v
            if callback is not None:
                callback(len(idx))
    finally:
        if was_training:
            model.train()
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
    return _score_pairs(model, tokenizer, pairs, batch_size, max_length, padding_side, callback,
                        batch_token_stats)


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
    return _score_pairs(model, tokenizer, pairs, batch_size, max_length, padding_side, callback,
                        lambda m, batch, side: batch_answer_nll(m, batch, side).tolist())


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


def supports_shared_prompt(model) -> bool:
    """Shared-prompt scoring needs a transformers model taking a KV cache (ULD's model included)."""
    from transformers import PreTrainedModel

    return isinstance(model, PreTrainedModel) and getattr(model.config, "is_decoder", True) is not False \
        and getattr(model, "_supports_cache_class", True) is not False


def _cache_kwarg(model) -> str:
    """transformers 5.24 renamed forward's `past_key_values` to `cache` (the old name warns)."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@torch.no_grad()
def _shared_prompt_batch(model, prompts: list[list[int]], answers: list[list[int]], owner: list[int],
                         pad_id: int) -> list[float]:
    """Average NLL of each answer (its label ids) after its question's prompt, the prompt run once.

    Prompts are left-padded and run with a KV cache (logits only at their last position, which predict
    every answer's first token); the cache is then indexed by `owner` (answer -> prompt row) and the
    right-padded answers run on top of it, with positions continuing each prompt's real length.
    """
    from transformers import DynamicCache

    device = _device(model)
    pb = pad_batch([{"input_ids": p, "attention_mask": [1] * len(p)} for p in prompts], pad_id, "left")
    p_ids, p_mask = pb["input_ids"].to(device), pb["attention_mask"].to(device)
    # ULD's model carries two caches (target and assistant) in one object of its own.
    cache = model.new_cache() if hasattr(model, "new_cache") else DynamicCache(config=model.config)
    key = _cache_kwarg(model)  # filled in place by the forward
    out = model(input_ids=p_ids, attention_mask=p_mask, position_ids=positions_from_mask(p_mask),
                use_cache=True, logits_to_keep=1, **{key: cache})
    first_logp = F.log_softmax(out.logits[:, -1, :].float(), dim=-1)
    idx = torch.tensor(owner, dtype=torch.long, device=device)
    cache.reorder_cache(idx)
    ab = pad_batch([{"input_ids": a, "attention_mask": [1] * len(a)} for a in answers], pad_id, "right")
    a_ids, a_mask = ab["input_ids"].to(device), ab["attention_mask"].to(device)
    lengths = p_mask.sum(-1)[idx]
    positions = lengths[:, None] + torch.arange(a_ids.shape[1], device=device)[None, :]
    mask = torch.cat([p_mask[idx], a_mask], dim=1)
    logits = model(input_ids=a_ids, attention_mask=mask, position_ids=positions, use_cache=False,
                   **{key: cache}).logits[:, :-1, :]
    targets = a_ids[:, 1:]
    keep = a_mask[:, 1:].bool()
    logp = F.log_softmax(logits[keep].float(), dim=-1).gather(-1, targets[keep].unsqueeze(-1)).squeeze(-1)
    rows = keep.nonzero(as_tuple=True)[0]
    sums = torch.zeros(len(answers), dtype=torch.float32, device=device).index_add_(0, rows, -logp)
    sums -= first_logp[idx].gather(-1, a_ids[:, :1]).squeeze(-1)
    return (sums / a_mask.sum(-1)).cpu().tolist()


def answer_nll_shared(
    model,
    tokenizer,
    questions: list[str],
    answer_lists: list[list[str]],
    batch_size: int = 16,
    max_length: int = 512,
    callback: Callback = None,
) -> list[list[float]]:
    """`answer_nll_multi` with each question's prompt run once and its KV cache shared by its answers.

    Same values as the flat pass up to float noise (tested <= 1e-5). Answers whose tokenization does not
    start with the question's prompt (possible in the open-unlearning format, which tokenizes the whole
    conversation), and models without a KV cache interface, are scored the flat way.
    """
    if len(questions) != len(answer_lists):
        raise ValueError(f"{len(questions)} questions but {len(answer_lists)} answer lists")
    if not supports_shared_prompt(model):
        return answer_nll_multi(model, tokenizer, questions, answer_lists, batch_size, max_length,
                                callback=callback)
    counter = TruncationCounter()
    prompts, answers, flat = [], [], []  # per question: prompt ids, [(j, label ids)], [(j, answer)]
    for q, alist in zip(questions, answer_lists, strict=True):
        p_ids = prompt_ids(tokenizer, q)
        mine, other = [], []
        for j, a in enumerate(alist):
            enc = encode_qa(tokenizer, q, a, max_length, counter)
            n_p = enc["labels"].count(IGNORE_INDEX)
            if enc["input_ids"][:n_p] == p_ids and n_p < len(enc["input_ids"]):
                mine.append((j, enc["input_ids"][n_p:]))
            else:
                other.append((j, a))
        prompts.append(p_ids)
        answers.append(mine)
        flat.append(other)
    if counter.truncated:
        warnings.warn(f"{counter.truncated}/{counter.total} answers cut at max_length={max_length} "
                      f"(e.g. {counter.examples[0]!r}): raise max_length", stacklevel=2)
    out = [[0.0] * len(a) for a in answer_lists]
    pad_id = _pad_id(tokenizer)
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        # Questions grouped by prompt length; a group holds about batch_size answers (at least one question).
        order = sorted(range(len(questions)), key=lambda i: -len(prompts[i]))
        group: list[int] = []
        groups = []
        for i in order:
            if group and sum(len(answers[k]) for k in group) + len(answers[i]) > batch_size:
                groups.append(group)
                group = []
            group.append(i)
        if group:
            groups.append(group)
        for group in groups:
            live = [i for i in group if answers[i]]
            if live:
                owner = [row for row, i in enumerate(live) for _ in answers[i]]
                nlls = _shared_prompt_batch(model, [prompts[i] for i in live],
                                            [ids for i in live for _, ids in answers[i]], owner, pad_id)
                it = iter(nlls)
                for i in live:
                    for j, _ in answers[i]:
                        out[i][j] = next(it)
            if callback is not None:
                callback(len(group))
    finally:
        if was_training:
            model.train()
    rest = [(i, j, a) for i, other in enumerate(flat) for j, a in other]
    if rest:
        vals = answer_nll(model, tokenizer, [(questions[i], a) for i, _, a in rest], batch_size, max_length)
        for (i, j, _), v in zip(rest, vals, strict=True):
            out[i][j] = v
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
