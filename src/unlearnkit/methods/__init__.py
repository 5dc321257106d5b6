"""Unlearning methods: a registry of name -> trainer class + default hyper-parameters, and `unlearn()`.

Defaults follow the papers / open-unlearning's TOFU configs (configs/<method>.yaml mirrors them; a
test keeps the two in sync). An alias resolves to the same spec and results record the canonical name.
"""

from __future__ import annotations

import copy
import difflib
import pickle
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from transformers import PrinterCallback, set_seed

from unlearnkit.data.formatting import TruncationCounter
from unlearnkit.data.unlearning import merge_perturbed
from unlearnkit.errors import UnlearnError
from unlearnkit.guard import UpdateGuard
from unlearnkit.methods.base import (
    CheckpointMarker,
    EpochSaver,
    EpochTimer,
    UnlearnResult,
    UnlearnTrainer,
    count_params,
    save_model_atomic,
)
from unlearnkit.methods.dpo import DPOTrainer
from unlearnkit.methods.ga import GATrainer
from unlearnkit.methods.gd import GDTrainer
from unlearnkit.methods.kl import KLTrainer
from unlearnkit.methods.npo import NPOTrainer
from unlearnkit.methods.rmu import RMUTrainer
from unlearnkit.methods.simnpo import SimNPOTrainer
from unlearnkit.methods.uld import ULDTrainer
from unlearnkit.outputs import write_json
from unlearnkit.training.arguments import TrainArgs, cpu_only


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: trainer class, canonical name, default method params and train settings."""

    name: str
    trainer_cls: type[UnlearnTrainer]
    params: dict
    train: dict = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    description: str = ""

    def resolve_params(self, overrides: dict | None) -> dict:
        """Defaults overridden by `overrides`; an unknown key is an error naming the valid ones."""
        unknown = sorted(set(overrides or {}) - set(self.params))
        if unknown:
            raise UnlearnError(f"unknown parameter(s) {unknown} for method {self.name}: "
                               f"use {', '.join(sorted(self.params)) or 'none'}")
        params = {**copy.deepcopy(self.params), **(overrides or {})}
        beta = params.get("beta")
        if "beta" in self.params and (isinstance(beta, bool) or not isinstance(beta, int | float)
                                      or not beta > 0):
            raise UnlearnError(f"method {self.name}: beta={beta} is out of range; the loss divides by "
                               "beta, so use a number > 0 (default {})".format(self.params["beta"]))
        return params

    def train_settings(self, overrides: dict | TrainArgs | None = None) -> TrainArgs:
        """The method's default settings overridden by a dict (a TrainArgs is taken as is)."""
        if isinstance(overrides, TrainArgs):
            return overrides
        return TrainArgs.from_settings(self.train, overrides)


_RETAIN = {"gamma": 1.0, "alpha": 1.0}
# open-unlearning TOFU recipe: lr 1e-5, 10 epochs, 8 x 4 accumulation, wd 0.01, 1 warmup epoch of 10.
_TOFU_TRAIN = {"lr": 1e-5, "epochs": 10, "batch_size": 8, "grad_accum": 4, "weight_decay": 0.01,
               "warmup_ratio": 0.1}

_SPECS: list[MethodSpec] = [
    MethodSpec("ga", GATrainer, {"retain_loss": "none"}, _TOFU_TRAIN,
               description="gradient ascent on the forget set"),
    MethodSpec("gd", GDTrainer, {**_RETAIN, "retain_loss": "nll"}, _TOFU_TRAIN,
               description="gradient ascent + retain NLL"),
    MethodSpec("kl", KLTrainer, {**_RETAIN, "retain_loss": "kl"}, _TOFU_TRAIN, aliases=("ga_kl",),
               description="gradient ascent + KL(ref || model) on retain"),
    MethodSpec("npo", NPOTrainer, {"beta": 0.1, "retain_loss": "none"}, _TOFU_TRAIN,
               description="negative preference optimization"),
    MethodSpec("npo_gd", NPOTrainer, {"beta": 0.1, **_RETAIN, "retain_loss": "nll"}, _TOFU_TRAIN,
               description="NPO + retain NLL"),
    MethodSpec("npo_kl", NPOTrainer, {"beta": 0.1, **_RETAIN, "retain_loss": "kl"}, _TOFU_TRAIN,
               description="NPO + KL on retain"),
    MethodSpec("dpo", DPOTrainer, {"beta": 0.1, "retain_loss": "none", "refusal_file": None}, _TOFU_TRAIN,
               aliases=("idk",), description="DPO preferring a refusal over the forget answer"),
    MethodSpec("dpo_gd", DPOTrainer, {"beta": 0.1, **_RETAIN, "retain_loss": "nll", "refusal_file": None},
               _TOFU_TRAIN, description="DPO/IdK + retain NLL"),
    MethodSpec("dpo_kl", DPOTrainer, {"beta": 0.1, **_RETAIN, "retain_loss": "kl", "refusal_file": None},
               _TOFU_TRAIN, description="DPO/IdK + KL on retain"),
    MethodSpec("simnpo", SimNPOTrainer,
               {"beta": 4.5, "delta": 0.0, "gamma": 0.125, "alpha": 1.0, "retain_loss": "nll"}, _TOFU_TRAIN,
               description="reference-free length-normalised NPO + retain NLL"),
    MethodSpec("rmu", RMUTrainer,
               {"layer": None, "update_layers": None, "steering_coeff": None, "steering_scale": 4.0,
                "gamma": 1.0, "alpha": 1000.0, "retain_loss": "embed"},
               {**_TOFU_TRAIN, "lr": 5e-5}, description="representation misdirection (WMDP)"),
    MethodSpec("uld", ULDTrainer,
               {"num_layers": None, "lora": {"r": 16, "alpha": 32, "dropout": 0.05}, "kl_weight": 5.0,
                "kl_positions": "all", "augment_file": None, "augment_questions": True,
                "augment_paraphrases": None, "augment_wrong": None, "retain_size": None,
                "weight": 0.8, "filter_factor": 1e-2, "select_best_epoch": False, "validation_file": None},
               {**_TOFU_TRAIN, "lr": 1e-3, "weight_decay": 0.01, "warmup_ratio": 0.1},
               description="unlearning from logit difference (trains a small assistant)"),
]
REGISTRY: dict[str, MethodSpec] = {s.name: s for s in _SPECS}
ALIASES: dict[str, str] = {a: s.name for s in _SPECS for a in s.aliases}

from unlearnkit.methods.uoe import register_uoe  # noqa: E402  (uoe builds on the trainers above)

register_uoe(REGISTRY, MethodSpec)


def list_methods() -> list[str]:
    """Canonical method names (aliases excluded)."""
    return list(REGISTRY)


def get_method(name: str) -> MethodSpec:
    """The spec of a method or alias; an unknown name is an UnlearnError naming the closest one."""
    key = name.strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key in REGISTRY:
        return REGISTRY[key]
    known = list(REGISTRY) + list(ALIASES)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.0)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise UnlearnError(f"unknown method {name!r}: {hint}known methods: {', '.join(known)}")


def build_trainer(
    method: str,
    model,
    tokenizer,
    forget_records: list[dict],
    retain_records: list[dict] | None = None,
    params: dict | None = None,
    train: TrainArgs | dict | None = None,
    output_dir: str | Path | None = None,
    perturbed_records: list[dict] | None = None,
    callbacks: list | None = None,
    refusals: list[str] | None = None,
    augmentation: list[dict] | None = None,
) -> UnlearnTrainer:
    """The ready-to-train Trainer of a method (what `unlearn()` runs); `trainer.model` is what trains.

    Exposed for tests and custom loops. `output_dir` is the Trainer's scratch dir, where checkpoints go
    when settings.save_strategy is not "no". Seeds everything from the settings first.
    `augmentation`: ULD's augmentation records (data.augment format), already cleaned of evaluated
    strings; `trainer.train_dataset.seen_records()` lists what the trainer has seen so far.
    """
    spec = get_method(method)
    cls = spec.trainer_cls
    params = spec.resolve_params(params)
    settings = spec.train_settings(train)
    forget = merge_perturbed(forget_records, perturbed_records) if perturbed_records else list(forget_records)
    set_seed(settings.seed)
    counter = TruncationCounter()
    dataset = cls.build_dataset(forget, list(retain_records or []), tokenizer, params, settings, counter,
                                refusals, augmentation)
    trained = cls.prepare_model(model, params, settings)
    output_dir = str(output_dir) if output_dir is not None else tempfile.mkdtemp(prefix="unlearnkit-")
    trainer = cls(model=trained, args=replace(settings, output_dir=output_dir), train_dataset=dataset,
                  data_collator=cls.collator(tokenizer), callbacks=list(callbacks or []), params=params)
    trainer.remove_callback(PrinterCallback)  # the library stays quiet; the CLI shows progress
    trainer.method_spec, trainer.settings, trainer.truncation = spec, settings, counter
    return trainer


def unlearn(
    method: str,
    model,
    tokenizer,
    forget_records: list[dict],
    retain_records: list[dict] | None = None,
    params: dict | None = None,
    train: TrainArgs | dict | None = None,
    out_dir: str | Path | None = None,
    perturbed_records: list[dict] | None = None,
    callbacks: list | None = None,
    refusals: list[str] | None = None,
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    augmentation: list[dict] | None = None,
) -> UnlearnResult:
    """Run one unlearning method on `model` and return the trained model and its training record.

    `train` overrides the method's default settings (a dict) or replaces them (a TrainArgs).
    `perturbed_records` (a forgetXX_perturbed split) adds its fields to the forget records by question;
    no method trains on its paraphrased/perturbed answers. `augmentation` is ULD's augmentation (records
    of data.augment, cleaned of evaluated strings); the result's `train_records` lists every record the
    trainer saw with its part. `callbacks` are transformers TrainerCallbacks; their
    on_epoch_end receives `model=` (for ULD the assistant), the hook for per-epoch evaluation.
    With `out_dir`, the final model (a LoRA adapter when LoRA is used; ULD: the assistant's adapter)
    is saved to out_dir/model and the record to out_dir/unlearn.json.
    With `checkpoint_dir` (and settings.save_strategy epoch/steps) Trainer checkpoints go there;
    `resume_from` (a checkpoint-N folder, see methods.base.find_checkpoint) continues from one.
    """
    out = Path(out_dir) if out_dir is not None else None
    timer = EpochTimer()
    settings = get_method(method).train_settings(train)
    extra_callbacks = [EpochSaver(out)] if settings.save_every_epoch and out is not None else []
    with tempfile.TemporaryDirectory(prefix="unlearnkit-") as scratch:
        trainer = build_trainer(method, model, tokenizer, forget_records, retain_records, params, settings,
                                checkpoint_dir or scratch, perturbed_records,
                                [timer, *extra_callbacks, *(callbacks or []), CheckpointMarker()], refusals,
                                augmentation)
        guard = UpdateGuard(trainer.model)
        trainer.add_callback(guard)
        start = time.perf_counter()
        try:
            trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        except pickle.UnpicklingError as err:  # torch's message suggests weights_only=False: never
            raise UnlearnError(f"checkpoint {resume_from} holds a pickle that is not plain tensors, and "
                               "unlearnkit does not unpickle code: delete that checkpoint folder, or "
                               "start over without --resume") from err
        seconds = time.perf_counter() - start
    if not settings.allow_no_update:
        guard.check(trainer.model, len(trainer.train_dataset), settings.per_device_train_batch_size,
                    settings.gradient_accumulation_steps,
                    settings.num_train_epochs, settings.warmup_steps, settings.max_steps)
    trained = trainer.model
    trained.eval()
    trainable, total = count_params(trained)
    extra = {"steering_coeff": trainer.steering_coeff} if isinstance(trainer, RMUTrainer) else {}
    if isinstance(trainer, ULDTrainer):
        extra["num_layers"] = trained.get_base_model().config.num_hidden_layers
    if hasattr(trainer, "extra_record"):  # UOE: the chosen expert; only its slice of fused tensors trains
        extra.update(trainer.extra_record())
        trainable = extra.get("trainable_params", trainable)
    result = UnlearnResult(
        method=trainer.method_spec.name, model=trained, params=trainer.params, train=settings,
        log_history=list(trainer.state.log_history), epoch_seconds=timer.seconds, train_seconds=seconds,
        global_steps=trainer.state.global_step, trainable_params=trainable, total_params=total,
        truncated=trainer.truncation.truncated, out_dir=out, extra=extra,
        train_records=trainer.train_dataset.seen_records() if hasattr(trainer.train_dataset, "seen_records")
        else [],
    )
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        save_model_atomic(trained, out / "model", tokenizer)
        # not asdict(result): it would deep-copy the model
        record = {k: getattr(result, k) for k in ("method", "params", "log_history", "epoch_seconds",
                                                   "train_seconds", "global_steps", "trainable_params",
                                                   "total_params", "truncated", "extra")}
        write_json(out / "unlearn.json", {**record, "train": settings.record()})
    return result


__all__ = ["ALIASES", "REGISTRY", "MethodSpec", "TrainArgs", "UnlearnResult", "UnlearnTrainer",
           "build_trainer", "cpu_only", "get_method", "list_methods", "unlearn"]
