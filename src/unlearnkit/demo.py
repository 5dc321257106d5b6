"""`unlearn demo`: the whole pipeline on the embedded `small` world, start to finish on a CPU.

prepare world → evaluate target and retain model → ULD on forget10 (augmented with the world's own
forget10_augment.jsonl, which shares no string with any evaluated split) → evaluate → report +
side-by-side answers. Everything lands in one directory (default runs/demo); the world is reused across runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from unlearnkit.config import RunConfig, load_config
from unlearnkit.data.augment import augment_file_for
from unlearnkit.data.tofu import load_split, perturbed_split_for
from unlearnkit.eval.scoring import generate_answers
from unlearnkit.eval.tofu import load_reference
from unlearnkit.models.loading import load_model_and_tokenizer
from unlearnkit.outputs import write_json
from unlearnkit.pipeline import evaluate, run
from unlearnkit.prepare import prepare
from unlearnkit.report import write_report

Say = Callable[[str], None]


def side_by_side(target_dir: Path, uld_dir: Path, data: Path, forget: str, n: int = 3) -> list[dict]:
    """n forget and n retain questions answered by the target and by the ULD model."""
    target, tok = load_model_and_tokenizer(target_dir)
    uld, _ = load_model_and_tokenizer(uld_dir)
    rows = [("forget", r) for r in load_split(data, perturbed_split_for(forget))[:n]]
    rows += [("retain", r) for r in load_split(data, "retain_perturbed")[:n]]
    questions = [r["question"] for _, r in rows]
    before = generate_answers(target, tok, questions, batch_size=len(questions), max_new_tokens=60)
    after = generate_answers(uld, tok, questions, batch_size=len(questions), max_new_tokens=60)
    return [{"split": split, "question": r["question"], "answer": r["answer"], "target": b, "uld": a}
            for (split, r), b, a in zip(rows, before, after, strict=True)]


def demo(out: str | Path = "runs/demo", preset: str = "small", seed: int = 0, forget: str = "forget10",
         overrides: list[str] | None = None, progress=None, callbacks=None, say: Say = print) -> dict:
    """Run the demo; returns {"summaries": {name: summary}, "examples": [...], "report": path}."""
    out = Path(out)
    world = out / "world"
    manifest = prepare(preset, world, seed=seed, forget_splits=[forget], progress=True)
    data, target = world / "data", world / "target"
    retain = world / manifest["retain_models"][forget]

    config = Path(__file__).parent / "configs" / ("uld_small.yaml" if preset == "small" else "uld.yaml")
    base: RunConfig = load_config(config, overrides, {
        "data.data": str(data), "data.forget": forget, "model.model": str(target), "train.seed": seed,
        "out": str(out / "uld"), "overwrite": True,
        "method.params.augment_file": str(augment_file_for(data, forget)),  # the world's own, leak-free
    })
    summaries = {}
    for name, model_dir in (("retain", retain), ("target", target)):  # retain first: it is the reference
        say(f"evaluating the {name} model")
        model, tok = load_model_and_tokenizer(model_dir)
        reference = load_reference(out / "eval-retain") if name == "target" else None
        summaries[name] = evaluate(model, tok, base, out / f"eval-{name}", name, reference, progress)
    base.eval.reference = str(out / "eval-retain")
    say(f"unlearning {forget} with ULD")
    record = run(base, progress, callbacks, say=say)
    summaries["uld"] = record["summary"]
    paths = write_report([out / "eval-target", out / "eval-retain", out / "uld" / "eval"], out / "report.md")
    examples = side_by_side(target, out / "uld" / "model", data, forget)
    write_json(out / "examples.json", {"examples": examples})
    return {"summaries": summaries, "examples": examples, "report": paths["markdown"], "run": record}

