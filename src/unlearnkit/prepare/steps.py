"""The step runner every `unlearn prepare` preset shares.

A step is a name, a content hash, an output directory and a build function. Its hash is stored in a stamp
file (prepare_step.json) written after the outputs, so a re-run reuses a step whose stored hash matches
and whose outputs are all there, redoes it when its name is forced, and redoes an interrupted one (the
old stamp is removed before building, a new one is written only once the outputs are complete).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from unlearnkit.errors import UnlearnError
from unlearnkit.outputs import write_json

STEP_FILE = "prepare_step.json"
RECIPE_VERSION = 1  # bump when the training code changes what a step produces (invalidates caches)
Force = bool | tuple[str, ...] | list[str]


def step_hash(*parts) -> str:
    """The content hash of a step: its parts as sorted-key JSON (anything else as str), sha256, 16 hex."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_step(path: Path, stamp: str = STEP_FILE) -> dict | None:
    """The stamp stored in directory `path`, or None when it is missing or unreadable."""
    try:
        return json.loads((path / stamp).read_text())
    except (OSError, ValueError):
        return None


@dataclass
class Steps:
    """Runs the steps of one prepare: `force` is True (redo every step) or the names of steps to redo."""

    force: Force = False
    progress: bool = True

    def forced(self, name: str) -> bool:
        return self.force is True or (not isinstance(self.force, bool) and name in self.force)

    def say(self, msg: str) -> None:
        if self.progress:
            from rich.console import Console

            Console(stderr=True).print(msg, highlight=False)

    def run(self, name: str, h: str, out_dir: Path, build: Callable[[], dict], *, key: str | None = None,
            stamp: str = STEP_FILE, outputs: tuple[str, ...] = ()) -> dict:
        """Reuse `out_dir` when its stamp holds hash `h` and every file of `outputs` exists; else call
        `build()` (it writes into out_dir and returns what to record) and stamp {"hash": h, **record}.

        `key` is the name `force` selects the step by (default `name`, which messages show). Returns the
        stamp's content plus "reused".
        """
        out_dir = Path(out_dir)
        step = read_step(out_dir, stamp)
        if (not self.forced(key or name) and step and step.get("hash") == h
                and all((out_dir / f).is_file() for f in outputs)):
            self.say(f"[dim]{name}: reused ({out_dir})[/]")
            return {**step, "reused": True}
        (out_dir / stamp).unlink(missing_ok=True)
        info = {"hash": h, **build()}
        write_json(out_dir / stamp, info)
        return {**info, "reused": False}


def qa_records(records: list[dict]) -> list[dict]:
    """The question and answer of each record, the only fields a target or retain model trains on."""
    return [{"question": r["question"], "answer": r["answer"]} for r in records]


def train_step(steps: Steps, name: str, h: str, out_dir: Path, records: list[dict], cfg, tokenizer,
               init: Callable) -> dict:
    """One fine-tuned model as a step: `init()` fine-tuned on `records` with `cfg`, saved into out_dir."""
    from unlearnkit.finetune import finetune, save_model

    def build() -> dict:
        model = init()
        info = {"n_params": sum(p.numel() for p in model.parameters()), "n_examples": len(records),
                "config": cfg}
        if cfg["epochs"] > 0:
            res = finetune(model, tokenizer, records, cfg, out_dir=None, progress=steps.progress,
                           description=name)
            info |= {"final_loss": res.final_loss, "avg_loss": res.avg_loss, "steps": res.steps,
                     "wall_time": res.wall_time, "losses": res.losses}
        else:
            info |= {"steps": 0, "wall_time": 0.0}
        save_model(model, tokenizer, out_dir)
        loss = f", final loss {info['final_loss']:.4f}" if "final_loss" in info else ""
        steps.say(f"{name}: {info['steps']} steps in {info['wall_time']:.1f}s{loss} -> {out_dir}")
        return info

    return steps.run(name, h, out_dir, build)


def pick_preset(preset, presets: dict, kind: str = ""):
    """A preset object as given, or the one `presets` names; an unknown name lists the valid ones."""
    if not isinstance(preset, str):
        return preset
    if preset not in presets:
        raise UnlearnError(f"unknown {kind}preset {preset!r}: choose one of {', '.join(presets)}")
    return presets[preset]
