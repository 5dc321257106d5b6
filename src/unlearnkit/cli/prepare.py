"""`unlearn prepare`: build the embedded benchmark world (data, tokenizer, base/target/retain models)."""

from __future__ import annotations

from pathlib import Path

import typer

from unlearnkit.cli.app import app, console


@app.command("prepare")
def prepare_cmd(
    preset: str = typer.Option("small", "--preset",
                               help="micro (tests), small (demo), smollm2; MoE worlds: moe, moe-plain "
                                    "(no domain routing), moe-mixtral."),
    out: Path = typer.Option(..., "--out", help="Output directory (reused steps are kept)."),
    seed: int = typer.Option(0, "--seed"),
    forget: list[str] = typer.Option(None, "--forget", help="Forget splits to build retain models for "
                                                             "(repeatable; default: the preset's)."),
    force: bool = typer.Option(False, "--force", help="Retrain every step even if its hash matches."),
    prompt_format: str = typer.Option(None, "--prompt-format",
                                      help="chat, plain or open-unlearning (default: the preset's)."),
) -> None:
    """Generate the world and train the base, target and retain models (TOFU recipe)."""
    from transformers.utils import logging as hf_logging

    from unlearnkit.prepare import prepare

    hf_logging.disable_progress_bar()  # our own rich bars show training progress

    if preset.startswith("moe"):
        from unlearnkit.prepare_moe import prepare_moe

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
    console.print(f"manifest: {out / 'prepare.json'}", highlight=False)
