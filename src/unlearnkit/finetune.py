"""Supervised fine-tuning on QA records with HF Trainer: full fine-tune or LoRA (peft).

Used to build the benchmark's base/target/retain models (prepare.py) and by `unlearn finetune`.
Labels cover the answer (+ EOS) only, via formatting.encode_qa, so the logged loss is answer-token CE.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from rich.console import Console
from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import PrinterCallback

from unlearnkit.data.formatting import QACollator, TruncationCounter, encode_qa
from unlearnkit.errors import UnlearnError
from unlearnkit.outputs import replace_dir
from unlearnkit.progress import TrainProgress, progress_bars
from unlearnkit.training.arguments import TrainArgs, canonical_key
from unlearnkit.training.guard import UpdateGuard

# Fine-tuning's defaults, by the short names of training.arguments (warmup: a fraction of the steps
# when < 1, else a number of steps; lora: None for a full fine-tune, else peft LoraConfig kwargs).
# Prepared worlds hash a recipe's dict, so these keys and values are part of every cached step's key.
FINETUNE_DEFAULTS: dict = {"epochs": 10.0, "lr": 1e-3, "batch_size": 16, "grad_accum": 1,
                           "weight_decay": 0.01, "adam_beta2": 0.999, "warmup": 0.05, "scheduler": "cosine",
                           "max_grad_norm": 1.0, "max_length": 256, "seed": 0, "lora": None}


def finetune_settings(**settings) -> dict:
    """A fine-tuning recipe: FINETUNE_DEFAULTS with `settings` over them (short names or TrainingArguments
    fields; unknown keys fail here). Plain data, so presets can hash it; `finetune` builds its TrainArgs."""
    for key in settings:
        canonical_key(key)
    return {**FINETUNE_DEFAULTS, **settings}


@dataclass
class FinetuneResult:
    """What happened: per-step training losses (answer-token CE), their summary, time and size."""

    losses: list[float]
    final_loss: float
    avg_loss: float
    steps: int
    wall_time: float
    n_examples: int
    n_truncated: int = 0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def encode_records(tokenizer, records: list[dict], max_length: int,
                   counter: TruncationCounter | None = None) -> list[dict]:
    """encode_qa on each {question, answer} record."""
    return [encode_qa(tokenizer, r["question"], r["answer"], max_length, counter) for r in records]


def _pad_id(tokenizer) -> int:
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    if tokenizer.eos_token_id is None:
        raise UnlearnError("the tokenizer has neither a pad nor an EOS token: set tokenizer.pad_token")
    return tokenizer.eos_token_id


def _apply_lora(model, lora: dict):
    from peft import LoraConfig, get_peft_model

    kwargs = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear"} | lora
    return get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **kwargs))


def finetune(model, tokenizer, records: list[dict], cfg: dict, out_dir: Path | None = None,
             progress: bool = True, description: str = "finetune", overwrite: bool = True,
             trainer_cls: Callable[..., Trainer] = Trainer,
             extra_keys: tuple[str, ...] = (), allow_no_update: bool = False) -> FinetuneResult:
    """Train `model` on QA `records` (answer-token loss) and save it to out_dir if given.

    `cfg` holds the settings (finetune_settings(); any key of training.arguments) over FINETUNE_DEFAULTS.

    `trainer_cls` lets a caller add a loss term (a Trainer subclass overriding compute_loss); the
    records' `extra_keys` fields reach it as (B,) tensors in the batch. A run that changed no weight
    (no optimizer step, or steps at learning rate 0 only) is an UnlearnError unless `allow_no_update`.

    With cfg.lora, LoRA adapters are trained and merged into the weights before saving (merge_and_unload),
    so the saved directory is always a plain model loadable by AutoModelForCausalLM. The trained model is
    the one passed in (for LoRA, its merged weights end up in the same modules).
    """
    if not records:
        raise UnlearnError("no training records: check the data file and split name")
    args = TrainArgs.from_settings(FINETUNE_DEFAULTS, cfg, logging_steps=1)
    counter = TruncationCounter()
    features = encode_records(tokenizer, records, args.max_length, counter)
    for feature, record in zip(features, records, strict=True):
        feature.update({key: record[key] for key in extra_keys})
    train_model = _apply_lora(model, args.lora) if args.lora else model
    losses: list[float] = []

    class _Losses(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    with tempfile.TemporaryDirectory(prefix="unlearnkit-ft-") as tmp:
        trainer = trainer_cls(model=train_model, args=replace(args, output_dir=tmp), train_dataset=features,
                              data_collator=QACollator(_pad_id(tokenizer), extra_keys=extra_keys),
                              callbacks=[_Losses()])
        trainer.remove_callback(PrinterCallback)  # it prints every log dict when tqdm is off
        guard = UpdateGuard(train_model)
        trainer.add_callback(guard)
        start = time.perf_counter()
        with progress_bars(Console(stderr=True)) if progress else nullcontext() as bars:
            if bars is not None:
                trainer.add_callback(TrainProgress(bars, description))
            trainer.train()
        wall = time.perf_counter() - start
    if not allow_no_update:
        guard.check(train_model, len(features), args.per_device_train_batch_size,
                    args.gradient_accumulation_steps, args.num_train_epochs, args.warmup_steps,
                    allow_key="--allow-no-update")
    if args.lora:
        train_model = train_model.merge_and_unload()
    train_model.eval()
    result = FinetuneResult(
        losses=losses, final_loss=losses[-1] if losses else math.nan,
        avg_loss=sum(losses) / len(losses) if losses else math.nan, steps=len(losses), wall_time=wall,
        n_examples=len(features), n_truncated=counter.truncated,
    )
    if out_dir is not None:
        info = {"finetune": result.to_dict(), "config": {**FINETUNE_DEFAULTS, **cfg}}
        save_model(train_model, tokenizer, Path(out_dir), {"finetune.json": info}, overwrite)
    return result


def save_model(model, tokenizer, out_dir: Path, extra_files: dict[str, dict] | None = None,
               overwrite: bool = True) -> None:
    """save_pretrained (safetensors) + tokenizer + extra JSON files (name -> content), atomically."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise UnlearnError(f"{out_dir} already exists: pass --overwrite or choose another --out")
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        for name, content in (extra_files or {}).items():
            (tmp / name).write_text(json.dumps(content, indent=1) + "\n")
    except BaseException:  # Ctrl-C or a full disk: no half-written sibling left behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, out_dir)


@torch.no_grad()
def answer_loss(model, tokenizer, records: list[dict], max_length: int = 256, batch_size: int = 32) -> float:
    """Mean answer-token cross-entropy over all answer tokens of `records` (eval mode, no grad)."""
    model.eval()
    collate = QACollator(_pad_id(tokenizer))
    features = encode_records(tokenizer, records, max_length)
    total, count = 0.0, 0
    for i in range(0, len(features), batch_size):
        batch = collate(features[i: i + batch_size])
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        labels = batch["labels"][:, 1:]
        nll = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels.flatten(),
                                                ignore_index=-100, reduction="sum")
        total += nll.item()
        count += int((labels != -100).sum())
    return total / count
