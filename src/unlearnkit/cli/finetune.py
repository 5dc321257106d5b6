"""`unlearn finetune`: supervised fine-tuning of a model on one TOFU split (full or LoRA)."""

from __future__ import annotations

from pathlib import Path

import typer

from unlearnkit.cli.app import app, console
from unlearnkit.errors import UnlearnError


@app.command("finetune")
def finetune_cmd(
    model: str = typer.Option(..., "--model", help="Local HF directory, preset name, or smollm2-135m."),
    data: Path = typer.Option(..., "--data", help="Directory of TOFU split files (<split>.jsonl)."),
    split: str = typer.Option("full", "--split", help="Split to train on, e.g. full or retain90."),
    out: Path = typer.Option(..., "--out", help="Output model directory (save_pretrained, safetensors)."),
    epochs: float = typer.Option(5.0, "--epochs", min=0.0),
    lr: float = typer.Option(1e-4, "--lr", min=0.0),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    lora_r: int = typer.Option(0, "--lora-r", min=0, help="LoRA rank; 0 = full fine-tune. LoRA is merged "
                                                          "into the weights before saving."),
    seed: int = typer.Option(0, "--seed"),
    max_length: int = typer.Option(256, "--max-length", min=8),
    max_samples: int = typer.Option(None, "--max-samples", min=1, help="First N rows of the split."),
    tokenizer: str = typer.Option(None, "--tokenizer", help="Tokenizer dir (needed for a preset model)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace --out if it exists."),
    prompt_format: str = typer.Option("chat", "--prompt-format", help="chat, plain or open-unlearning."),
    system_prompt: str = typer.Option(None, "--system-prompt", help="System message for the prompts."),
) -> None:
    """Fine-tune a model on question/answer pairs (answer-token loss) and save it to --out."""
    from transformers.utils import logging as hf_logging

    from unlearnkit.data.formatting import set_prompt_format
    from unlearnkit.data.tofu import load_split
    from unlearnkit.finetune import FinetuneConfig, finetune
    from unlearnkit.models.loading import load_model_and_tokenizer

    hf_logging.disable_progress_bar()  # our own rich bar shows training progress
    if out.exists() and not overwrite:
        raise UnlearnError(f"{out} already exists: pass --overwrite or choose another --out")
    records = load_split(data, split, max_samples=max_samples)
    m, tok = load_model_and_tokenizer(model, tokenizer=tokenizer, seed=seed)
    set_prompt_format(tok, prompt_format, system_prompt)
    lora = {"r": lora_r, "lora_alpha": 2 * lora_r} if lora_r else None
    cfg = FinetuneConfig(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, max_length=max_length,
                         lora=lora)
    console.print(f"finetune {model} on {split} ({len(records)} rows) -> {out}", highlight=False)
    res = finetune(m, tok, records, cfg, out_dir=out, progress=True, overwrite=True)
    if res.n_truncated:
        console.print(f"[yellow]{res.n_truncated} of {res.n_examples} examples were cut at "
                      f"--max-length {max_length}[/]")
    console.print(f"[green]done[/] {res.steps} steps in {res.wall_time:.1f}s, final loss "
                  f"{res.final_loss:.4f}, mean loss {res.avg_loss:.4f} -> {out}", highlight=False)
