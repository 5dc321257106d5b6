"""Multiple-choice accuracy (WMDP / MMLU style) by answer-option log-likelihood.

Two ways to ask, as in lm-evaluation-harness:
- `option`: prompt = the question; each choice's full text is the continuation, scored by the sum or
  the per-token mean of its log-probabilities (`norm`). Works for small models that never saw a
  lettered format.
- `letter`: prompt = the question with the choices listed as "A. ...", continuation = " A" / " B" ...;
  what instruction-tuned models are usually evaluated with.
Prompts come from `formatting.build_prompt`, so chat templates are used when the tokenizer has one.
Items use the WMDP layout {"question", "choices": [...], "answer": int}; MMLU files with a letter answer
("B") or `options`/`target` field names are accepted too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import TrainerCallback

from unlearnkit.data.formatting import IGNORE_INDEX, answer_text, pad_batch, prompt_ids
from unlearnkit.data.jsonl import read_records
from unlearnkit.data.tofu import read_parquet
from unlearnkit.errors import UnlearnError
from unlearnkit.eval.scoring import batch_answer_nll

MODES = ("option", "letter")
NORMS = ("mean", "sum")
LETTERS = "ABCDEFGH"


def _normalize_item(raw: dict, where: str) -> dict:
    """One item in the WMDP layout; accepts MMLU-style variants and says exactly what is missing."""
    question = raw.get("question", raw.get("input"))
    choices = raw.get("choices", raw.get("options"))
    if isinstance(choices, dict):  # {"A": "...", "B": "..."}
        choices = [choices[k] for k in sorted(choices)]
    answer = raw.get("answer", raw.get("target", raw.get("label")))
    if question is None or not choices or answer is None:
        raise UnlearnError(f"{where}: a multiple-choice item needs 'question', 'choices' (list) and 'answer' "
                           "(index or letter), as in WMDP/MMLU")
    if isinstance(answer, str):
        text = answer.strip()
        if text.isdigit():
            answer = int(text)
        elif len(text) == 1 and text.upper() in LETTERS:
            answer = LETTERS.index(text.upper())
        elif text in choices:
            answer = choices.index(text)
        else:
            raise UnlearnError(f"{where}: answer {answer!r} is neither an index, a letter nor a choice")
    if not 0 <= int(answer) < len(choices):
        raise UnlearnError(f"{where}: answer index {answer} is out of range for {len(choices)} choices")
    return {**raw, "question": str(question), "choices": [str(c) for c in choices], "answer": int(answer)}


def load_mcq_hub(spec: str) -> tuple[str, list[dict]]:
    """(set name, items) of a hub dataset 'org/name[:config[:split]]' (split default test), e.g.
    cais/wmdp:wmdp-bio or cais/mmlu:college_biology, through `datasets` (HF cache, HF_HUB_OFFLINE)."""
    from unlearnkit.hub import hub_error

    name, _, rest = spec.partition(":")
    config, _, split = rest.partition(":")
    split = split or "test"
    try:
        import datasets

        rows = [dict(r) for r in datasets.load_dataset(name, config or None, split=split)]
    except Exception as err:  # offline, unknown repo/config/split
        raise hub_error("dataset", name, err, part=f"config {config or 'default'}, split {split}") from err
    if not rows:
        raise UnlearnError(f"hub dataset {spec} holds no multiple-choice items")
    items = [_normalize_item(r, f"{spec} item {i}") for i, r in enumerate(rows)]
    return config or name.rsplit("/", 1)[-1], items


def load_mcq(path: str | Path) -> list[dict]:
    """Items from a JSONL/parquet file, a JSON list, or a JSON object holding a list ({"test": [...]})."""
    path = Path(path)
    if not path.is_file():
        raise UnlearnError(f"multiple-choice file {path} does not exist")
    if path.suffix == ".parquet":
        rows = read_parquet(path)
        if not rows:
            raise UnlearnError(f"{path} holds no multiple-choice items")
        return [_normalize_item(r, f"{path} row {i}") for i, r in enumerate(rows)]
    rows = read_records(path)
    if not rows:
        raise UnlearnError(f"{path} holds no multiple-choice items")
    return [_normalize_item(r, f"{path} item {i}") for i, r in enumerate(rows)]


def letter_question(question: str, choices: list[str]) -> str:
    """The MMLU-style prompt body: the question, then 'A. choice' lines."""
    if len(choices) > len(LETTERS):
        raise UnlearnError(f"letter mode supports at most {len(LETTERS)} choices, got {len(choices)}")
    return question + "\n" + "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))


def _features(tokenizer, item: dict, mode: str, max_length: int) -> list[dict]:
    """One encoded (prompt + continuation) per choice; labels cover the continuation only (no EOS)."""
    if mode == "letter":
        prompt = prompt_ids(tokenizer, letter_question(item["question"], item["choices"]))
        continuations = [LETTERS[i] for i in range(len(item["choices"]))]
    else:
        prompt = prompt_ids(tokenizer, item["question"])
        continuations = item["choices"]
    feats = []
    for cont in continuations:
        ids = tokenizer(answer_text(tokenizer, cont), add_special_tokens=False)["input_ids"]
        if not ids:
            raise UnlearnError(f"choice {cont!r} of question {item['question'][:60]!r} tokenizes to nothing")
        full = (prompt + ids)[-max_length:]  # keep the continuation whole; cut the prompt's start
        n = min(len(ids), len(full) - 1)
        feats.append({"input_ids": full, "attention_mask": [1] * len(full),
                      "labels": [IGNORE_INDEX] * (len(full) - n) + full[-n:]})
    return feats


@torch.no_grad()
def choice_logprobs(model, tokenizer, items: list[dict], mode: str = "option", norm: str = "mean",
                    batch_size: int = 32, max_length: int = 512) -> list[list[float]]:
    """Per item, the log-likelihood of each choice: summed over its tokens or their mean (`norm`)."""
    if mode not in MODES:
        raise UnlearnError(f"unknown MC mode {mode!r}: use one of {', '.join(MODES)}")
    if norm not in NORMS:
        raise UnlearnError(f"unknown MC normalisation {norm!r}: use one of {', '.join(NORMS)}")
    feats, owner = [], []
    for i, item in enumerate(items):
        for f in _features(tokenizer, item, mode, max_length):
            feats.append(f)
            owner.append(i)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    scores = [0.0] * len(feats)
    order = sorted(range(len(feats)), key=lambda i: -len(feats[i]["input_ids"]))
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = pad_batch([feats[i] for i in idx], pad, "right")
            nll = batch_answer_nll(model, batch)
            counts = (batch["labels"][:, 1:] != IGNORE_INDEX).sum(-1).float()
            values = -nll if norm == "mean" else -nll * counts
            for i, v in zip(idx, values.tolist(), strict=True):
                scores[i] = v
    finally:
        model.train(was_training)
    out: list[list[float]] = [[] for _ in items]
    for i, s in zip(owner, scores, strict=True):
        out[i].append(s)
    return out


def mcq_accuracy(model, tokenizer, items: list[dict], mode: str = "option", norm: str = "mean",
                 batch_size: int = 32, max_length: int = 512) -> dict:
    """Accuracy (argmax choice == answer; ties go to the first choice) plus per-item predictions."""
    if not items:
        raise UnlearnError("no multiple-choice items to evaluate")
    scores = choice_logprobs(model, tokenizer, items, mode, norm, batch_size, max_length)
    preds = [max(range(len(s)), key=s.__getitem__) for s in scores]
    correct = [int(p == it["answer"]) for p, it in zip(preds, items, strict=True)]
    chance = sum(1 / len(it["choices"]) for it in items) / len(items)
    return {"accuracy": sum(correct) / len(items), "n": len(items), "chance": chance, "mode": mode,
            "norm": norm, "predictions": preds, "correct": correct, "scores": scores}


def evaluate_domains(model, tokenizer, sets: dict[str, list[dict]], forget: str | None = None,
                     mode: str = "option", norm: str = "mean", batch_size: int = 32,
                     max_length: int = 512) -> dict:
    """Accuracy per named set; with `forget`, also the mean accuracy of the other (utility) sets."""
    per = {name: mcq_accuracy(model, tokenizer, items, mode, norm, batch_size, max_length)
           for name, items in sets.items()}
    summary = {"accuracy": {name: r["accuracy"] for name, r in per.items()}, "mode": mode, "norm": norm,
               "details": per}
    if forget is not None:
        if forget not in sets:
            raise UnlearnError(f"forget set {forget!r} is not among the evaluated sets {list(sets)}")
        utility = [r["accuracy"] for name, r in per.items() if name != forget]
        summary["forget_accuracy"] = per[forget]["accuracy"]
        summary["utility_accuracy"] = sum(utility) / len(utility) if utility else float("nan")
    return summary


class ForgetAccuracyStop(TrainerCallback):
    """Stops training at the first check whose forget-set accuracy is <= `threshold`, so methods are
    compared at equal forgetting (how UOE and its baselines are compared). `wrap` turns the trained
    module into the model to score (ULD: the assistant into target - w * assistant)."""

    def __init__(self, tokenizer, items: list[dict], threshold: float, every: int = 1,
                 batch_size: int = 32, wrap: Callable | None = None):
        self.tokenizer, self.items, self.threshold, self.every = tokenizer, items, threshold, every
        self.batch_size, self.wrap = batch_size, wrap
        self.history: list[dict] = []
        self.stopped_at: int | None = None

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every:
            return
        scored = self.wrap(model) if self.wrap else model
        acc = mcq_accuracy(scored, self.tokenizer, self.items, batch_size=self.batch_size)["accuracy"]
        self.history.append({"step": state.global_step, "forget_accuracy": acc})
        if acc <= self.threshold:
            self.stopped_at = state.global_step
            control.should_training_stop = True


def is_mcq_world(data_dir: str | Path) -> bool:
    """A multiple-choice world (`unlearn prepare --preset moe`): world.json, forget.jsonl, mcq_*.jsonl."""
    d = Path(data_dir)
    return ((d / "world.json").is_file() and (d / "forget.jsonl").is_file()
            and any(d.glob("mcq_*.jsonl")))


def world_forget_domain(data_dir: str | Path) -> str:
    """The forget domain a multiple-choice world was built with (its world.json)."""
    return json.loads((Path(data_dir) / "world.json").read_text())["forget_domain"]


def write_mcq_eval(out_dir: str | Path, summary: dict, **meta) -> Path:
    """MCQ_EVAL.json (summary + per-question details + meta), written atomically."""
    from unlearnkit.outputs import write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return write_json(out / "MCQ_EVAL.json", {**meta, **summary})


def load_domain_sets(data_dir: str | Path) -> dict[str, list[dict]]:
    """Every mcq_<name>.jsonl of a directory (as written by `unlearn prepare --preset moe`), by name."""
    data_dir = Path(data_dir)
    files = sorted(data_dir.glob("mcq_*.jsonl"))
    if not files:
        raise UnlearnError(f"no mcq_<domain>.jsonl files in {data_dir}: run `unlearn prepare --preset moe`")
    return {f.stem[len("mcq_"):]: load_mcq(f) for f in files}
