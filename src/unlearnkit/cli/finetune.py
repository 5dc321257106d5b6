"""`unlearn finetune`: supervised fine-tuning of a model on one TOFU split (full or LoRA)."""

from __future__ import annotations

from pathlib import Path

import typer

from unlearnkit.cli.app import app, console, deprecated_alias
from unlearnkit.config import DEFAULT_SEED
from unlearnkit.errors import UnlearnError


@app.command("finetune")
def finetune_cmd(
    model: str = typer.Option(..., "--model", help="Local HF folder, preset, smollm2-135m or hub ID."),
    data: str = typer.Option(..., "--data", help="TOFU folder (JSONL/JSON/parquet) or hub dataset."),
    split: str = typer.Option("full", "--split", help="Split to train on, e.g. full or retain90."),
    out: Path = typer.Option(..., "--out", help="Output model directory (save_pretrained, safetensors)."),
    epochs: float = typer.Option(5.0, "--epochs", help="Passes over the split (> 0; fractions allowed)."),
    lr: float = typer.Option(1e-4, "--lr", min=0.0),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    lora_r: int = typer.Option(0, "--lora-r", min=0, help="LoRA rank; 0 = full fine-tune. LoRA is merged "
                                                          "into the weights before saving."),
    seed: int = typer.Option(DEFAULT_SEED, "--seed"),
    max_length: int = typer.Option(256, "--max-length", min=8),
    max_train_samples: int = typer.Option(None, "--max-train-samples", min=1,
                                          help="Train on the first N rows of the split."),
    old_max_samples: int = typer.Option(None, "--max-samples", min=1, hidden=True),
    tokenizer: str = typer.Option(None, "--tokenizer", help="Tokenizer dir (needed for a preset model)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace --out if it exists."),
    allow_no_update: bool = typer.Option(False, "--allow-no-update",
                                         help="Save even if training changed no weight (a baseline)."),
    prompt_format: str = typer.Option("chat", "--prompt-format", help="chat, plain or open-unlearning."),
    system_prompt: str = typer.Option(None, "--system-prompt", help="System message for the prompts."),
) -> None:
    """Fine-tune a model on question/answer pairs (answer-token loss) and save it to --out."""
    from transformers.utils import logging as hf_logging

    from unlearnkit.data.formatting import set_prompt_format
    from unlearnkit.data.tofu import load_split
    from unlearnkit.finetune import finetune, finetune_settings
    from unlearnkit.models.loading import load_model_and_tokenizer
    from unlearnkit.outputs import check_out_dir

    hf_logging.disable_progress_bar()  # our own rich bar shows training progress
    max_samples = deprecated_alias("--max-samples", old_max_samples, "--max-train-samples", max_train_samples)
    if not epochs > 0:
        raise UnlearnError(f"--epochs {epochs} trains nothing (zero steps would save the model unchanged): "
                           "use a number > 0")
    check_out_dir(out, overwrite, {"--model": model, "--data": data, "--tokenizer": tokenizer})
    records = load_split(data, split, max_samples=max_samples)
    m, tok = load_model_and_tokenizer(model, tokenizer=tokenizer, seed=seed)
    set_prompt_format(tok, prompt_format, system_prompt)
    lora = {"r": lora_r, "lora_alpha": 2 * lora_r} if lora_r else None
    cfg = finetune_settings(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, max_length=max_length,
                         lora=lora)
    console.print(f"finetune {model} on {split} ({len(records)} rows) -> {out}", highlight=False)
    res = finetune(m, tok, records, cfg, out_dir=out, progress=True, overwrite=True,
                   allow_no_update=allow_no_update)
    if res.n_truncated:
        console.print(f"[yellow]{res.n_truncated} of {res.n_examples} examples were cut at "
                      f"--max-length {max_length}[/]")
    console.print(f"[green]done[/] {res.steps} steps in {res.wall_time:.1f}s, final loss "
                  f"{res.final_loss:.4f}, mean loss {res.avg_loss:.4f} -> {out}", highlight=False)
