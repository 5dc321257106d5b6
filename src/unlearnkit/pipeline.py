"""`unlearn run`: load → unlearn → save → evaluate, with provenance, as one atomic output directory.

Output layout (DIR):
    config.yaml        the resolved config        run.json     method, timings, params, provenance
    train_data.jsonl   every record the trainer saw: question, answer, part (forget / retain /
                       augment_forget / augment_retain / refusal)
    model/             the unlearned model: a save_pretrained dir, a LoRA adapter, or the method's own
                       artifact (MethodRun.save)
    eval/              TOFU_EVAL.json, TOFU_SUMMARY.json/.md, generations (when evaluation is on);
                       MCQ_EVAL.json instead on a multiple-choice (moe) world
    reference/         the retain model's evaluation, when --reference named a model directory
    diagnostics/       MoE models: ROUTING.json (routing overlap before/after on forget and retain
                       tokens, the watched expert's share and affinity/rank per logging step) and plots
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from unlearnkit.config import RunConfig, config_hash, save_config
from unlearnkit.costs import peak_rss_bytes
from unlearnkit.data.augment import eval_overlap
from unlearnkit.data.formatting import get_prompt_format, set_prompt_format
from unlearnkit.data.jsonl import read_jsonl, write_jsonl
from unlearnkit.data.tofu import (
    check_forget_retain,
    check_perturbed_rows,
    load_split,
    perturbed_split_for,
    retain_split_for,
)
from unlearnkit.errors import UnlearnError
from unlearnkit.eval import tofu as tofu_eval
from unlearnkit.eval.mcq import (
    ForgetAccuracyStop,
    evaluate_domains,
    is_mcq_world,
    load_domain_sets,
    world_forget_domain,
    write_mcq_eval,
)
from unlearnkit.eval.moe import RoutingMonitor, make_batches, write_routing
from unlearnkit.methods import Method, RunContext, get_method, unlearn
from unlearnkit.models.loading import load_model_and_tokenizer
from unlearnkit.models.moe import is_moe
from unlearnkit.outputs import atomic_dir, check_out_dir, provenance, write_json
from unlearnkit.progress import labelled
from unlearnkit.training.checkpoints import (
    checkpoint_dir_for,
    find_checkpoint,
    prepare_checkpoints,
    tidy_checkpoints,
)
from unlearnkit.training.guard import NoUpdateError

ProgressFactory = Callable[[str, int], Callable[[int], None]]
Say = Callable[[str], None]
ROUTING_RECORDS = 64  # forget and retain records whose routing an MoE run tracks (diagnostics/)


# ---------------------------------------------------------------------------------------------------
# Several processes (accelerate launch / torchrun): rank 0 writes, evaluation is sharded


def is_main_process() -> bool:
    """Rank 0 by the launcher's environment (valid before the process group exists)."""
    return int(os.environ.get("RANK", "0")) == 0


def init_distributed() -> None:
    """Join the process group a launcher (accelerate launch, torchrun) set up, before any model work."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState

        from unlearnkit.methods import cpu_only

        PartialState(cpu=cpu_only())


@contextmanager
def scratch_dir():
    """A throwaway output dir for ranks other than 0."""
    with tempfile.TemporaryDirectory(prefix="unlearnkit-rank-") as tmp:
        yield Path(tmp)


@dataclass
class RunData:
    """The records a run trains on, loaded and checked once."""

    forget: list[dict]
    perturbed: list[dict]
    retain: list[dict]


def load_run_data(data: str, forget: str, max_samples: int | None = None) -> RunData:
    """Forget, its perturbed variant and the complementary retain split; they must not overlap.

    A multiple-choice world (`unlearn prepare --preset moe`) has one forget and one retain file and no
    perturbed answers; `forget` is then ignored (the world fixes its forget domain).
    """
    if is_mcq_world(data):
        records = read_jsonl(Path(data) / "forget.jsonl")
        return RunData(forget=records[:max_samples] if max_samples else records, perturbed=[],
                       retain=read_jsonl(Path(data) / "retain.jsonl"))
    check_forget_retain(data, forget)
    records = RunData(
        forget=load_split(data, forget, max_samples),
        perturbed=load_split(data, perturbed_split_for(forget), max_samples),
        retain=load_split(data, retain_split_for(forget)),
    )
    if not records.forget:
        raise UnlearnError(f"forget split {forget} of {data} is empty: nothing to unlearn")
    check_perturbed_rows(records.forget, records.perturbed, forget, data)
    return records


def evaluate(model, tokenizer, cfg: RunConfig, out: Path, name: str, reference: dict | None,
             progress: ProgressFactory | None = None, extra_meta: dict | None = None) -> dict:
    """TOFU evaluation of `model` written to `out`; returns the summary."""
    start = time.perf_counter()
    summary, log = tofu_eval.evaluate_tofu(
        model, tokenizer, cfg.data.data, cfg.data.forget, reference, cfg.eval.max_samples,
        cfg.eval.batch_size, cfg.eval.max_new_tokens, labelled(progress, name), cfg.eval.gen_batch_size,
    )
    meta = {"name": name, "forget": cfg.data.forget, "max_samples": cfg.eval.max_samples,
            "seconds": round(time.perf_counter() - start, 2), "processes": tofu_eval.rank_and_world()[1],
            "prompt_format": get_prompt_format(tokenizer).describe(),
            **(extra_meta or {})}
    tofu_eval.write_eval(out, summary, log, meta=meta)
    return summary


def evaluate_mcq(model, tokenizer, cfg: RunConfig, out: Path, name: str, forget: str) -> dict:
    """Multiple-choice accuracy per domain of an MC world (forget = its forget domain), written to
    out/MCQ_EVAL.json; the summary holds forget_accuracy, utility_accuracy and accuracy per domain."""
    start = time.perf_counter()
    result = evaluate_domains(model, tokenizer, load_domain_sets(cfg.data.data), forget,
                              batch_size=cfg.eval.batch_size)
    write_mcq_eval(out, result, name=name, forget=forget, seconds=round(time.perf_counter() - start, 2))
    return {"forget_accuracy": result["forget_accuracy"], "utility_accuracy": result["utility_accuracy"],
            **{f"{domain}_accuracy": acc for domain, acc in result["accuracy"].items()}}


def resolve_reference(cfg: RunConfig, out: Path, progress: ProgressFactory | None = None,
                      prompt_format: dict | None = None) -> dict | None:
    """The retain model's eval log: a TOFU_EVAL.json (or dir holding one), or a model dir to evaluate.
    A log scored under another prompt format than `prompt_format` (the run's) is refused."""
    spec = cfg.eval.reference
    if not spec:
        return None
    path = Path(spec).expanduser()
    if reference_kind(spec) == "log":
        if prompt_format is not None:
            tofu_eval.check_reference_format(path, prompt_format)
        return tofu_eval.load_reference(path)
    model, tok = load_retain_model(cfg)
    evaluate(model, tok, cfg, out / "reference", f"retain ({path.name})", None, progress)
    return tofu_eval.load_reference(out / "reference")


def load_retain_model(cfg: RunConfig):
    """The --reference model directory, with its tokenizer in the run's prompt format."""
    model, tok = load_model_and_tokenizer(Path(cfg.eval.reference).expanduser(), cfg.model.trust_remote_code,
                                          cfg.model.dtype)
    set_prompt_format(tok, cfg.model.prompt_format, cfg.model.system_prompt)
    return model, tok


def reference_kind(spec: str) -> str:
    """"log" (a TOFU_EVAL.json or a dir holding one) or "model" (a model dir to evaluate), else an error."""
    path = Path(spec).expanduser()
    if path.is_file() or (path / tofu_eval.EVAL_FILE).is_file():
        return "log"
    if (path / "config.json").is_file():
        return "model"
    raise UnlearnError(f"reference {spec} is neither a TOFU_EVAL.json nor a model directory: "
                       "pass the retain model's eval log or its model dir")


def reference_forget_split(spec: str) -> str | None:
    """The forget split a reference was made for, when it says so (its eval_meta.json, or a retainNN
    model directory as `unlearn prepare` names them); None when it does not say."""
    path = Path(spec).expanduser()
    if reference_kind(spec) == "log":
        meta = (path if path.is_dir() else path.parent) / tofu_eval.META_FILE
        try:
            forget = json.loads(meta.read_text()).get("forget")
        except (OSError, ValueError, AttributeError):
            return None
        return forget if isinstance(forget, str) else None
    match = re.fullmatch(r"retain(\d\d)", path.resolve().name)
    return f"forget{100 - int(match.group(1)):02d}" if match else None


def reference_warning(spec: str | None, forget: str) -> str | None:
    """A loud note when --reference was made for another forget split than the one scored."""
    split = reference_forget_split(spec) if spec else None
    if split and split != forget:
        return (f"--reference {spec} belongs to {split}, not {forget}: forget quality will compare against "
                f"the wrong retain model (pass the retain model for {forget})")
    return None


def train_overrides(cfg: RunConfig) -> dict:
    """Training settings the user set; anything left unset keeps the method's own default."""
    return {k: v for k, v in cfg.train.items() if v is not None}


def check_eval_overlap(cfg: RunConfig, spec: Method, params, settings, data: RunData,
                       augmentation: list[dict] | None) -> dict:
    """The leak guard: no training record (retain or augmentation part) may carry a paraphrased or
    perturbed answer of the evaluated forget split, unless data.allow_eval_overlap (then recorded)."""
    if not data.perturbed:  # a multiple-choice world: nothing is scored by those strings
        return {"checked": False}
    parts = spec.trainer_cls.training_parts(data.forget, data.retain, params, settings, augmentation)
    try:  # the target's fine-tuning data: rows of it are no leak (both models were trained on them)
        finetuned = load_split(cfg.data.data, "full")
    except UnlearnError:
        finetuned = data.forget + data.retain
    pairs = {(r["question"], r["answer"]) for r in finetuned}
    hits = eval_overlap(parts, data.perturbed, pairs)
    entry = {"checked": True, "allowed": cfg.data.allow_eval_overlap, "overlapping_records": len(hits),
             "first": {"part": hits[0][0], **hits[0][1]} if hits else None}
    if hits and not cfg.data.allow_eval_overlap:
        part, first = hits[0]
        raise UnlearnError(
            f"{len(hits)} training records carry a paraphrased/perturbed answer of the evaluated split "
            f"{perturbed_split_for(cfg.data.forget)} (first, part {part}: {first['question']!r} -> "
            f"{first['answer']!r}): training on them inflates forget quality; remove them, or pass "
            "--allow-eval-overlap (data.allow_eval_overlap=true) for an ablation")
    return entry


def check_run_inputs(cfg: RunConfig) -> None:
    """Checks that need no model, run before any loading: a bad value fails at once, not after training.
    (A method's own checks are its params' validation and its MethodRun.check.)"""
    if not cfg.data.data:
        raise UnlearnError("no data to unlearn from: pass --data DIR (a TOFU-layout folder, e.g. a prepared "
                           "world's data/) or a hub dataset ID, or set data.data in the config")
    if cfg.eval.enabled and cfg.eval.reference:
        if is_mcq_world(cfg.data.data):
            raise UnlearnError(f"--reference applies to TOFU data; {cfg.data.data} is a multiple-choice "
                               "world (scored by accuracy, no retain model needed): drop --reference")
        if reference_kind(cfg.eval.reference) == "log":  # a bad log fails now, before checkpoints/outputs
            tofu_eval.load_reference(Path(cfg.eval.reference).expanduser())
    if cfg.eval.stop_at_forget_accuracy is not None and not is_mcq_world(cfg.data.data):
        raise UnlearnError(f"eval.stop_at_forget_accuracy needs a multiple-choice world (unlearn prepare "
                           f"--preset moe); {cfg.data.data} is TOFU data: drop the option")


def run_inputs(cfg: RunConfig, spec: Method) -> dict[str, object]:
    """The paths a run reads, by flag or parameter: --out may not be, hold or lie inside any of them."""
    return {"--model": cfg.model.model, "--data": cfg.data.data, "--reference": cfg.eval.reference,
            **{key: cfg.method.params.get(key) for key in spec.params_cls.path_keys()}}


def run_context(cfg: RunConfig, say: Say) -> RunContext:
    """What a method's hooks get from the run: config, notes, and the reference/scoring services."""

    def truth_ratios(model, tokenizer, rows: list[dict]) -> list[float]:
        return tofu_eval.forget_truth_ratios(model, tokenizer, rows, cfg.eval.batch_size)

    def reference_is_model() -> bool:
        return bool(cfg.eval.reference) and reference_kind(cfg.eval.reference) == "model"

    return RunContext(cfg=cfg, say=say, reference_is_model=reference_is_model,
                      load_retain_model=partial(load_retain_model, cfg), truth_ratios=truth_ratios)


def run(cfg: RunConfig, progress: ProgressFactory | None = None, callbacks: list | None = None,
        say: Say | None = None) -> dict:
    """Unlearn `cfg.data.forget` from `cfg.model.model` with `cfg.method`; write everything to cfg.out.

    Trainer checkpoints (train.save_strategy, default epoch) go to <out>.checkpoints/, kept if the run
    fails and removed when it succeeds; with cfg.resume the newest complete one is continued.
    Returns run.json's content (with the eval summary when evaluation ran). `say` gets one-line notes
    (augmentation read, dropped strings) for the console.
    """
    say = say or (lambda message: None)
    spec = get_method(cfg.method.name)
    out = Path(cfg.out)
    check_out_dir(out, cfg.overwrite, run_inputs(cfg, spec))
    init_distributed()
    params = spec.resolve_params(cfg.method.params)
    ctx = run_context(cfg, say)
    hooks = spec.start_run(params, ctx)
    hooks.check()
    check_run_inputs(cfg)
    train = {"max_length": cfg.data.max_length, "save_strategy": "epoch", **train_overrides(cfg)}
    settings = spec.train_settings(train)
    batch, world = settings.per_device_train_batch_size, int(os.environ.get("WORLD_SIZE", "1"))
    if batch % world:
        raise UnlearnError(f"train.batch_size={batch} must be a multiple of the {world} processes: "
                           "each step's batch is split across them")
    data = ctx.data = load_run_data(cfg.data.data, cfg.data.forget, cfg.data.max_samples)
    augmentation = hooks.load_data()
    overlap = check_eval_overlap(cfg, spec, params, settings, data, augmentation)
    mcq = is_mcq_world(cfg.data.data)
    forget_name = world_forget_domain(cfg.data.data) if mcq else cfg.data.forget
    model, tokenizer = load_model_and_tokenizer(cfg.model.model, cfg.model.trust_remote_code, cfg.model.dtype)
    set_prompt_format(tokenizer, cfg.model.prompt_format, cfg.model.system_prompt)
    ctx.model, ctx.tokenizer = model, tokenizer
    ckpt = checkpoint_dir_for(out)
    saving = settings.save_strategy != "no"
    resume_from = prepare_checkpoints(ckpt, saving, resume=cfg.resume, overwrite=cfg.overwrite,
                                      config_hash=config_hash(cfg), seed=cfg.seed) if is_main_process() else \
        (find_checkpoint(ckpt) if cfg.resume else None)
    ctx.resume_from = resume_from

    # Under several processes only rank 0 writes the output; the others work in a scratch dir.
    writer = atomic_dir(out, cfg.overwrite) if is_main_process() else scratch_dir()
    with tidy_checkpoints(ckpt, is_main_process()), writer as tmp:
        save_config(cfg, tmp)
        reference = resolve_reference(cfg, tmp, progress, get_prompt_format(tokenizer).describe()) \
            if cfg.eval.enabled else None
        extra_callbacks = list(callbacks or []) + hooks.callbacks()
        stop = None
        if cfg.eval.stop_at_forget_accuracy is not None:
            stop = ForgetAccuracyStop(tokenizer, load_domain_sets(cfg.data.data)[forget_name],
                                      cfg.eval.stop_at_forget_accuracy, cfg.eval.stop_check_steps,
                                      cfg.eval.batch_size, partial(hooks.inference_model, model))
            extra_callbacks.append(stop)
        monitor = None
        if hooks.monitors_routing and is_moe(model):
            monitor = RoutingMonitor(model, *(make_batches(tokenizer, records[:ROUTING_RECORDS],
                                                           cfg.eval.batch_size, cfg.data.max_length)
                                              for records in (data.forget, data.retain)))
            extra_callbacks.append(monitor)
        try:
            result = unlearn(spec.name, model, tokenizer, data.forget, data.retain, params, settings, None,
                             None, extra_callbacks, checkpoint_dir=ckpt if saving else None,
                             resume_from=resume_from, augmentation=augmentation)
        except NoUpdateError:
            if is_main_process():  # checkpoints of a run that changed nothing are worth nothing
                shutil.rmtree(ckpt, ignore_errors=True)
            raise
        except UnlearnError as err:
            last = find_checkpoint(ckpt)
            kept = f"; the last good checkpoint is kept in {last}" if last else ""
            raise UnlearnError(f"{err}{kept}") from err
        record = {
            "method": result.method, "model": cfg.model.model, "data": cfg.data.data,
            "forget": forget_name, "params": result.params.to_dict(), "train": result.train.record(),
            "train_seconds": result.train_seconds, "epoch_seconds": result.epoch_seconds,
            "global_steps": result.global_steps, "train_peak_rss": peak_rss_bytes(),
            "trainable_params": result.trainable_params,
            "total_params": result.total_params, "truncated": result.truncated, "extra": result.extra,
            "log_history": result.log_history, "resumed_from": resume_from.name if resume_from else None,
            "eval_overlap": overlap, "train_records": len(result.train_records),
            **provenance(cfg.seed, config_hash(cfg)),
        }
        write_jsonl(tmp / "train_data.jsonl", result.train_records)
        if monitor is not None:
            routing = monitor.report(result.model, result.global_steps, hooks.watched_expert(result))
            write_routing(tmp / "diagnostics", routing)
            record["routing"] = {"watched": routing["watched"], "expert_share": routing["expert_share"],
                                 **{f"overlap_{part}": v["mean"] for part, v in routing["overlap"].items()}}
        if stop is not None:
            record["stopped_at_step"] = stop.stopped_at
            record["forget_accuracy_checks"] = stop.history
        record.update(hooks.record(result))
        final = hooks.save(result.model, tmp / "model")
        record["artifact_bytes"] = sum(f.stat().st_size for f in (tmp / "model").rglob("*") if f.is_file())
        if cfg.eval.enabled and mcq:
            final.eval()
            record["summary"] = evaluate_mcq(final, tokenizer, cfg, tmp / "eval", result.method, forget_name)
        elif cfg.eval.enabled:
            final.eval()
            record["summary"] = evaluate(final, tokenizer, cfg, tmp / "eval", f"{result.method}", reference,
                                         progress, {"method": result.method,
                                                    **provenance(cfg.seed, config_hash(cfg))})
        write_json(tmp / "run.json", record)
    if is_main_process():
        shutil.rmtree(ckpt, ignore_errors=True)
    return record


def copy_config(cfg: RunConfig, **changes) -> RunConfig:
    """A deep copy of cfg with top-level sections replaced (for the demo and bench)."""
    new = copy.deepcopy(cfg)
    for key, value in changes.items():
        setattr(new, key, value)
    return new
