"""`unlearn prepare`: build the embedded benchmark world (data, tokenizer, base/target/retain models)."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from unlearnkit.cli.app import app, console

# what prepare writes (tofu-* presets: retain/ and eval/ too), and the temp names a killed prepare leaves
# (model.tmp, .hidden)
WORLD_PARTS = r"prepare\.json|data|tokenizer|eval|(base|target|retain\d*)(\.tmp)?|\..*"


@app.command("prepare")
def prepare_cmd(
    preset: str = typer.Option("small", "--preset",
                               help="micro (tests: ~1 CPU-minute, cannot show unlearning), mini (~90 "
                                    "s, shows unlearning on forget10), small (demo), "
                                    "smollm2; MoE worlds: moe, moe-plain (no domain routing), moe-mixtral; "
                                    "on TOFU data (--data): tofu-smollm2, tofu-micro."),
    out: Path = typer.Option(..., "--out", help="Output directory (reused steps are kept)."),
    seed: int = typer.Option(0, "--seed", help="World seed: generates the data and trains the world's "
                                                "models (bench's --world-seed; 0 = the documented worlds)."),
    forget: list[str] = typer.Option(None, "--forget", help="Forget splits to build retain models for "
                                                             "(repeatable; default: the preset's); "
                                                             "tofu-* presets: to evaluate on."),
    force: bool = typer.Option(False, "--force", help="Retrain every step even if its hash matches."),
    prompt_format: str = typer.Option(None, "--prompt-format",
                                      help="chat, plain or open-unlearning (default: the preset's)."),
    data: Path = typer.Option(None, "--data", help="TOFU-layout directory (tofu-* presets only)."),
    max_samples: int = typer.Option(None, "--max-samples", min=1,
                                    help="tofu-* presets: first N records of each training part and "
                                         "evaluation split (smoke runs)."),
) -> None:
    """Generate the world and train the base, target and retain models (TOFU recipe)."""
    from transformers.utils import logging as hf_logging

    from unlearnkit.errors import UnlearnError
    from unlearnkit.outputs import check_out_dir
    from unlearnkit.prepare import MOE_PRESETS, PRESETS, TOFU_PRESETS, prepare

    known = [*PRESETS, *MOE_PRESETS, *TOFU_PRESETS]
    if preset not in known:
        raise UnlearnError(f"unknown preset {preset!r}: choose one of {', '.join(known)}")
    hf_logging.disable_progress_bar()  # our own rich bars show training progress
    # a world is built up step by step, so only an earlier world's own parts may already be there
    world_parts = tuple(p.name for p in out.iterdir() if re.fullmatch(WORLD_PARTS, p.name)) \
        if out.is_dir() and not out.is_symlink() else ()
    check_out_dir(out, False, reusable=world_parts)

    if preset.startswith("tofu"):
        from unlearnkit.cli.progress import progress_bars
        from unlearnkit.prepare import prepare_tofu

        if data is None:
            raise UnlearnError(f"preset {preset} trains on TOFU data: pass --data DIR (the split files)")
        manifest = prepare_tofu(preset, data, out, seed=seed, forget_splits=forget or None,
                                max_samples=max_samples, force=force, eval_bars=progress_bars)
    elif data is not None or max_samples is not None:
        raise UnlearnError(f"--data/--max-samples apply to the tofu-* presets; {preset} generates its data")
    elif preset.startswith("moe"):
        from unlearnkit.prepare import prepare_moe

        manifest = prepare_moe(preset, out, seed=seed, force=force, progress=True)
    else:
        from dataclasses import replace

        from unlearnkit.prepare import resolve_preset

        spec = resolve_preset(preset)
        if prompt_format:
            spec = replace(spec, prompt_format=prompt_format)
        manifest = prepare(spec, out, seed=seed, forget_splits=forget or None, force=force, progress=True)
    for name, info in manifest["models"].items():
        state = "reused" if info.get("reused") else f"{info.get('wall_time', 0):.0f}s"
        console.print(f"  {name:<9} {out / info['dir']}  ({state})", highlight=False)
    for name, info in manifest.get("evals", {}).items():
        s = info["summary"]
        fq = f", forget quality {s['forget_quality']:.3e}" if "forget_quality" in s else ""
        console.print(f"  eval {name:<16} forget ROUGE-L {s['forget_Q_A_ROUGE']:.3f}, retain ROUGE-L "
                      f"{s['retain_Q_A_ROUGE']:.3f}{fq}  ({out / info['dir']})", highlight=False)
    console.print(f"manifest: {out / 'prepare.json'}", highlight=False)
