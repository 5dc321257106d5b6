"""Target and retain models fine-tuned on a TOFU-layout directory (real TOFU), each with its TOFU evaluation.

prepare/world.py builds models on a generated world; here the data is read from `--data` instead. The target
learns the forget authors (forget10) plus the retain authors the evaluation scores (the questions of
`retain_perturbed`, all inside retain90); the retain model is trained the same way on those retain
records only, so it never saw a forget10 author and is a valid forget-quality reference for every
forget split inside forget10 (forget01, forget05, forget10). Steps use prepare/steps.py's runner:
a re-run reuses finished models and evaluations, an interrupted one resumes at the first unfinished step.

Layout of `out`: target/, retain/ (save_pretrained dirs), eval/<model>/<forget>/ (TOFU_EVAL.json,
TOFU_SUMMARY.json/.md, TOFU_GENERATIONS.jsonl; the target's forget quality uses the retain model's log),
prepare.json (manifest).
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from unlearnkit.data.tofu import FORGET_SPLITS, load_split, retain_split_for
from unlearnkit.errors import UnlearnError
from unlearnkit.finetune import finetune_settings
from unlearnkit.outputs import write_json
from unlearnkit.prepare.steps import RECIPE_VERSION, Steps, pick_preset, qa_records, step_hash, train_step

RETAIN_EVAL_SPLIT = "retain_perturbed"  # the retain questions TOFU's evaluation scores


@dataclass(frozen=True)
class TofuPreset:
    """A recipe on TOFU data: which model, which records, one training config for target and retain."""

    name: str
    model: str  # "smollm2-135m" (pretrained: its own tokenizer) or a models/presets name (from scratch)
    train: dict
    forget: str = "forget10"
    retain: str = "evaluated"  # "evaluated": retain_perturbed's authors only; "all": the whole retainXX
    vocab_size: int = 1000  # tokenizer trained on the training records, for a from-scratch preset only
    eval_batch_size: int = 16
    max_new_tokens: int = 200  # TOFU's greedy generation length for ROUGE


# tofu-smollm2: SmolLM2-135M-Instruct, full fine-tune (measurements and the pilot: /work/notes/h18_recipe.md).
# - Records: target = forget10 (400) + the 400 retain_perturbed questions (the 20 retain authors TOFU
#   scores) = 800; retain model = those 400 only. 75 optimizer steps per epoch for the pair (50 + 25).
# - Max length 168: the longest TOFU record with SmolLM2's chat template (incl. its default system prompt)
#   is 162 tokens (median 82, p99 ~125), so nothing is truncated; batches pad to their longest record.
# - Cost, full fine-tune, batch 16, 2 threads: 8.0-13.6 s per optimizer step (median 11.8) with the load
#   average at ~1 (14-25 CPU-s/step); 191-334 s at load 13-14 (7 agents on 2 cores). LoRA r=16
#   all-linear was no cheaper at equal load (activation gradients still flow through the frozen 135M
#   weights), so full fine-tune. 5 epochs = 375 steps: measured 2026-12-03 on the quiet machine, retain
#   943 s + target 1494 s = 41 min (6-7.5 s/step); a full TOFU evaluation on forget10 adds 625-640 s.
# - lr 2e-4, cosine, 10% warmup, no weight decay, 5 epochs: the pilot (20 forget10 + 20 retain records,
#   same lr, 5 epochs, batch 8) reached forget ROUGE-L 0.975 and retain ROUGE-L 0.884 (train loss 0.08-0.12).
TOFU_PRESETS: dict[str, TofuPreset] = {
    "tofu-smollm2": TofuPreset(
        name="tofu-smollm2", model="smollm2-135m",
        train=finetune_settings(epochs=5, lr=2e-4, batch_size=16, max_length=168, warmup=0.1,
                             weight_decay=0.0),
    ),
    # CI smoke test / quick look: the same code path with a tiny Llama and a tokenizer trained here.
    "tofu-micro": TofuPreset(
        name="tofu-micro", model="llama-micro", vocab_size=600,
        train=finetune_settings(epochs=1, lr=5e-3, batch_size=8, max_length=192), max_new_tokens=8,
    ),
}


def _pairs(rows: list[dict]) -> set[tuple[str, str]]:
    return {(r["question"], r["answer"]) for r in rows}


def training_records(preset: TofuPreset, data: str | Path, max_samples: int | None = None) -> dict:
    """{forget, retain} QA records; `max_samples` keeps the first N of each (smoke runs)."""
    forget = qa_records(load_split(data, preset.forget))
    retain_split = retain_split_for(preset.forget)
    retain = qa_records(load_split(data, retain_split))
    if _pairs(forget) & _pairs(retain):
        raise UnlearnError(f"{preset.forget} and {retain_split} in {data} share questions: "
                           "retain must exclude forget (check the split files)")
    if preset.retain == "evaluated":
        scored = _pairs(load_split(data, RETAIN_EVAL_SPLIT))
        missing = len(scored - _pairs(retain))
        if missing:
            raise UnlearnError(f"{missing} of the {len(scored)} {RETAIN_EVAL_SPLIT} questions are not in "
                               f"{retain_split} ({data}): the target could not learn them")
        retain = [r for r in retain if (r["question"], r["answer"]) in scored]
    elif preset.retain != "all":
        raise UnlearnError(f"retain must be 'evaluated' or 'all', got {preset.retain!r}")
    if max_samples is not None:
        forget, retain = forget[:max_samples], retain[:max_samples]
    return {"forget": forget, "retain": retain}


def reference_splits(preset: TofuPreset, data: str | Path) -> list[str]:
    """Forget splits (in `data`) whose every question is in the trained forget split: the retain model is
    a valid forget-quality reference for those."""
    trained = _pairs(load_split(data, preset.forget))
    out = []
    for split in FORGET_SPLITS:
        try:
            rows = load_split(data, split)
        except UnlearnError:
            continue
        if _pairs(rows) <= trained:
            out.append(split)
    return out


def resolve_tofu_preset(preset: str | TofuPreset) -> TofuPreset:
    return pick_preset(preset, TOFU_PRESETS, "TOFU ")


def _tokenizer(preset: TofuPreset, records: list[dict], out: Path, h: str, steps: Steps):
    """A pretrained model's own tokenizer, or (from-scratch preset) one trained on the records, cached."""
    from unlearnkit.models.loading import DENSE_PRESETS, SMOLLM2, load_model_and_tokenizer, load_tokenizer

    if preset.model == SMOLLM2:
        from unlearnkit.models.loading import smollm2_dir

        return load_tokenizer(smollm2_dir()), None
    if preset.model not in DENSE_PRESETS:
        return load_model_and_tokenizer(preset.model)[1], None
    from unlearnkit.data.world_tokenizer import save_tokenizer, train_tokenizer

    tok_dir = out / "tokenizer"

    def build() -> dict:
        texts = [t for r in records for t in (r["question"], r["answer"])]
        tok = train_tokenizer(texts, preset.vocab_size)
        save_tokenizer(tok, tok_dir)
        steps.say(f"tokenizer: {len(tok)} tokens -> {tok_dir}")
        return {"vocab_size": len(tok)}

    steps.run("tokenizer", h, tok_dir, build)
    return load_tokenizer(tok_dir), "tokenizer"


def _eval_step(steps: Steps, name: str, h: str, out_dir: Path, model_dir: Path, data, forget: str,
               reference: dict | None, max_samples: int | None, preset: TofuPreset, eval_bars) -> dict:
    """TOFU evaluation of one saved model into out_dir, reused when its stored hash matches."""
    from unlearnkit.eval import tofu as tofu_eval
    from unlearnkit.models.loading import load_hf_dir

    def build() -> dict:
        start = time.perf_counter()
        model, tok = load_hf_dir(model_dir)
        with eval_bars() if eval_bars else nullcontext() as bars:  # not live during training's own bar
            summary, log = tofu_eval.evaluate_tofu(model, tok, data, forget, reference, max_samples,
                                                   preset.eval_batch_size, preset.max_new_tokens, bars)
        info = {"model": str(model_dir), "forget": forget, "max_samples": max_samples,
                "seconds": round(time.perf_counter() - start, 2), "summary": summary}
        meta = {"name": name, "model": str(model_dir), "data": str(data), "forget": forget,
                "max_samples": max_samples, "batch_size": preset.eval_batch_size,
                "max_new_tokens": preset.max_new_tokens, "seconds": info["seconds"]}
        tofu_eval.write_eval(out_dir, summary, log, meta=meta)
        rouge = (f"forget ROUGE-L {summary['forget_Q_A_ROUGE']:.3f}, "
                 f"retain ROUGE-L {summary['retain_Q_A_ROUGE']:.3f}")
        steps.say(f"{name}: {rouge} in {info['seconds']:.0f}s -> {out_dir}")
        return info

    return steps.run(name, h, out_dir, build, key="eval", outputs=(tofu_eval.EVAL_FILE,))


def prepare_tofu(preset: str | TofuPreset, data: str | Path, out: str | Path, seed: int = 0,
                 forget_splits: tuple[str, ...] | list[str] | None = None, max_samples: int | None = None,
                 force: bool | tuple[str, ...] | list[str] = False, evaluate: bool = True,
                 progress: bool = True, eval_bars=None) -> dict:
    """Fine-tune target and retain models on TOFU data in `data`, evaluate both, return the manifest.

    `forget_splits`: forget splits to evaluate on (default: the trained one); each must lie inside the
    trained forget split. `max_samples`: first N records of each training part and evaluation split.
    `force`: True, or step names ("tokenizer", "target", "retain", "eval") to redo. `eval_bars`: a
    context manager yielding evaluate_tofu's progress factory (the CLI's rich bars).
    """
    preset = resolve_tofu_preset(preset)
    if max_samples is not None and (isinstance(max_samples, bool) or max_samples < 1):
        raise UnlearnError(f"max_samples must be a positive integer, got {max_samples!r}")
    out = Path(out)
    start = time.perf_counter()
    records = training_records(preset, data, max_samples)
    valid = reference_splits(preset, data)
    forget_splits = tuple(forget_splits or (preset.forget,))
    for f in forget_splits:
        if f not in valid:
            raise UnlearnError(f"cannot evaluate on {f!r}: the retain model is a reference only for forget "
                               f"splits inside {preset.forget} ({', '.join(valid)})")
    out.mkdir(parents=True, exist_ok=True)
    steps = Steps(force, progress)

    cfg = preset.train | {"seed": seed}
    data_hash = step_hash(records)
    tok_hash = step_hash("tofu-tokenizer", data_hash, preset.model, preset.vocab_size, RECIPE_VERSION)
    tokenizer, tok_dir = _tokenizer(preset, records["retain"] + records["forget"], out, tok_hash, steps)
    from unlearnkit.models.loading import load_model_and_tokenizer

    def init():
        return load_model_and_tokenizer(preset.model, tokenizer=tokenizer, seed=seed)[0]

    parts = {"retain": records["retain"], "target": records["retain"] + records["forget"]}
    models, hashes = {}, {}
    for name, rows in parts.items():
        hashes[name] = step_hash("tofu", name, tok_hash, step_hash(rows), preset.model, cfg,
                                 seed, RECIPE_VERSION)
        models[name] = train_step(steps, name, hashes[name], out / name, rows, cfg, tokenizer, init)
        models[name] |= {"n_forget": len(records["forget"]) if name == "target" else 0,
                         "n_retain": len(records["retain"])}

    evals: dict[str, dict] = {}
    if evaluate:
        from unlearnkit.eval.tofu import load_reference

        for f in forget_splits:
            for name in ("retain", "target"):  # the retain model first: its log is the target's reference
                d = out / "eval" / name / f
                reference = load_reference(out / "eval" / "retain" / f) if name == "target" else None
                h = step_hash("tofu-eval", hashes[name], hashes["retain"], f, max_samples,
                              preset.eval_batch_size, preset.max_new_tokens)
                evals[f"{name}/{f}"] = {"dir": str(d.relative_to(out)), **_eval_step(
                    steps, f"eval {name} {f}", h, d, out / name, data, f, reference, max_samples, preset,
                    eval_bars)}

    manifest = {
        "preset": preset.name, "seed": seed, "root": str(out.resolve()), "data": str(Path(data).resolve()),
        "forget": preset.forget, "retain_records": preset.retain, "max_samples": max_samples,
        "model": preset.model, "tokenizer": {"dir": tok_dir},
        "models": {name: {"dir": name, **info} for name, info in models.items()},
        "retain_models": {f: "retain" for f in valid},
        "evals": evals,
        "wall_time": time.perf_counter() - start,
    }
    write_json(out / "prepare.json", manifest)
    steps.say(f"[green]prepared[/] {preset.name} on {data} in {manifest['wall_time']:.1f}s -> {out}")
    return manifest
