"""Unlearning methods: the registry (name -> Method) and `unlearn()`, which runs one method.

A method is one module (or one package: uld/, uoe/) holding its parameter dataclass, its trainer and
its `register(Method(...))` call; importing this package imports the built-in ones, and
`registry.load_plugins()` third-party ones. Defaults follow the papers / open-unlearning's TOFU configs.
An alias resolves to the same Method and results record the canonical name.
"""

# ruff: noqa: I001  (the built-in methods are imported in registration order, after the registry)
from __future__ import annotations

import pickle
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from transformers import PrinterCallback, set_seed

from unlearnkit.data.formatting import TruncationCounter
from unlearnkit.data.unlearning import merge_perturbed
from unlearnkit.errors import UnlearnError
from unlearnkit.methods.base import LossParams, UnlearnResult, UnlearnTrainer, count_params
from unlearnkit.methods.params import MethodParams, param
from unlearnkit.methods.registry import (
    ALIASES,
    REGISTRY,
    Method,
    MethodRun,
    RunContext,
    get_method,
    list_methods,
    load_plugins,
    register,
)
from unlearnkit.outputs import write_json
from unlearnkit.training.arguments import TrainArgs, cpu_only
from unlearnkit.training.callbacks import CheckpointMarker, EpochSaver, EpochTimer
from unlearnkit.training.checkpoints import save_model_atomic
from unlearnkit.training.guard import UpdateGuard

# The built-in methods register themselves when imported, in this order (list_methods() keeps it).
from unlearnkit.methods import ga, gd, kl, npo, dpo, simnpo, rmu, uld, uoe  # noqa: E402,F401


def build_trainer(
    method: str,
    model,
    tokenizer,
    forget_records: list[dict],
    retain_records: list[dict] | None = None,
    params: dict | MethodParams | None = None,
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
    params: dict | MethodParams | None = None,
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
    `resume_from` (a checkpoint-N folder, see training.checkpoints.find_checkpoint) continues from one.
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
    extra = trainer.extra_record()  # e.g. RMU's steering coefficient, UOE's chosen expert
    trainable = extra.get("trainable_params", trainable)  # UOE: only a slice of fused tensors trains
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
        write_json(out / "unlearn.json",
                   {**record, "params": result.params.to_dict(), "train": settings.record()})
    return result


__all__ = ["ALIASES", "REGISTRY", "LossParams", "Method", "MethodParams", "MethodRun", "RunContext",
           "TrainArgs", "UnlearnResult", "UnlearnTrainer", "build_trainer", "cpu_only", "get_method",
           "list_methods", "load_plugins", "param", "register", "unlearn"]
