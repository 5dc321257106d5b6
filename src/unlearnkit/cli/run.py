"""`unlearn run`: unlearn a forget split with a method, save the result, evaluate it."""

from __future__ import annotations

from pathlib import Path

import typer

from unlearnkit.cli.app import app, console
from unlearnkit.cli.progress import progress_bars
from unlearnkit.errors import UnlearnError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def LogLines():  # noqa: N802 -- used like the class it builds; transformers is imported only when run
    """One line per logging step: step, loss and each term the method logs."""
    from transformers import TrainerCallback

    class _LogLines(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs or not state.is_world_process_zero:
                return
            terms = "  ".join(f"{k}={v:.4g}" for k, v in logs.items()
                              if isinstance(v, float) and k not in ("epoch", "learning_rate", "grad_norm"))
            console.print(f"[dim]step {state.global_step:>5}  epoch {logs.get('epoch', 0):5.2f}[/]  "
                          f"{terms}", highlight=False)

    return _LogLines()


def warn_reference(cfg) -> None:
    """Say loudly when --reference belongs to another forget split (its errors are the run's to raise)."""
    from unlearnkit.pipeline import reference_warning

    try:
        warning = reference_warning(cfg.eval.reference, cfg.data.forget) if cfg.eval.enabled else None
    except UnlearnError:
        return
    if warning:
        console.print(f"[bold yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)


def check_out_flags(out: str | None, args: list[str]) -> None:
    """Where output goes is the --out/--overwrite/--resume flags' call: a positional override may
    name `out=` only without --out, and never `overwrite=`/`resume=` (no implied overwrite)."""
    for text in args:
        key = text.partition("=")[0].strip()
        if key in ("overwrite", "resume"):
            raise UnlearnError(f"override {text!r}: pass --{key} as a flag instead (a config override "
                               "never replaces or resumes an output)")
        if key == "out" and out is not None and text.partition("=")[2].strip() != out:
            raise UnlearnError(f"both --out {out} and the override {text!r} name the output: keep one")


def method_config(method: str) -> Path | None:
    """The packaged configs/<method>.yaml (the method's recipe choices beyond its defaults), if any."""
    from unlearnkit.methods import get_method

    path = CONFIG_DIR / f"{get_method(method).name}.yaml"
    return path if path.is_file() else None


@app.command("run", context_settings={"allow_extra_args": False})
def run_cmd(
    args: list[str] = typer.Argument(None, help="[CONFIG.yaml] then dotted overrides, e.g. train.lr=1e-3"),
    method: str = typer.Option(None, "--method", help="uld, ga, gd, kl, npo, npo_gd, npo_kl, dpo, ..."),
    model: str = typer.Option(None, "--model", help="Target: local HF dir, preset, smollm2-135m or hub ID."),
    data: str = typer.Option(None, "--data", help="TOFU folder (JSONL/JSON/parquet) or hub dataset."),
    forget: str = typer.Option(None, "--forget", help="forget01 | forget05 | forget10."),
    out: str = typer.Option(None, "--out", help="Output directory."),
    reference: str = typer.Option(None, "--reference",
                                  help="Retain model dir or its TOFU_EVAL.json (enables forget quality)."),
    seed: int = typer.Option(None, "--seed"),
    epochs: float = typer.Option(None, "--epochs"),
    lr: float = typer.Option(None, "--lr"),
    lora_r: int = typer.Option(None, "--lora-r", help="Train a LoRA adapter of this rank (any method)."),
    no_eval: bool = typer.Option(False, "--no-eval", help="Train and save only."),
    max_samples: int = typer.Option(None, "--max-samples", min=1,
                                    help="Evaluate the first N rows per split."),
    stop_at: float = typer.Option(None, "--stop-at-forget-accuracy",
                                  help="MC worlds: stop at the first step whose forget-domain accuracy "
                                       "is <= this (checked every eval.stop_check_steps steps)."),
    augment_file: str = typer.Option(None, "--augment-file",
                                     help="ULD: augmentation (a forgetXX_augment.jsonl, e.g. the world's "
                                          "data/forget10_augment.jsonl, or the ULD CSV directory)."),
    allow_eval_overlap: bool = typer.Option(False, "--allow-eval-overlap",
                                            help="Ablations only: train even if training records carry "
                                                 "the evaluated split's paraphrased/perturbed answers."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out."),
    resume: bool = typer.Option(False, "--resume",
                                help="Continue an interrupted run from OUT.checkpoints/."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code"),
    prompt_format: str = typer.Option(None, "--prompt-format",
                                      help="chat (default), plain or open-unlearning (model.prompt_format)."),
    system_prompt: str = typer.Option(None, "--system-prompt", help="System message (model.system_prompt)."),
) -> None:
    """Unlearn FORGET from MODEL with METHOD; writes model/, eval/, config.yaml and run.json to OUT.

    Checkpoints go to OUT.checkpoints/ each epoch (train.save_strategy=no|epoch|steps) and are removed
    when the run succeeds; after a crash or kill, the same command with --resume continues.
    """
    from unlearnkit.config import load_config
    from unlearnkit.pipeline import is_main_process, run

    args = list(args or [])
    config_path = args.pop(0) if args and args[0].endswith((".yaml", ".yml")) else None
    check_out_flags(out, args)
    # the options' values as typed by the CLI, never re-read as YAML (`--model no` is the path "no")
    flags = {"method.name": method, "model.model": model, "data.data": data, "data.forget": forget,
             "out": out, "eval.reference": reference, "train.seed": seed, "train.epochs": epochs,
             "train.lr": lr, "train.lora.r": lora_r, "eval.max_samples": max_samples,
             "eval.stop_at_forget_accuracy": stop_at, "model.prompt_format": prompt_format,
             "model.system_prompt": system_prompt,
             "method.params.augment_file": augment_file, "overwrite": overwrite or None,
             "eval.enabled": False if no_eval else None, "resume": resume or None,
             "model.trust_remote_code": trust_remote_code or None,
             "data.allow_eval_overlap": allow_eval_overlap or None}
    if config_path is None and method is not None:
        config_path = method_config(method)
    cfg = load_config(config_path, args, {k: v for k, v in flags.items() if v is not None})
    warn_reference(cfg)
    if is_main_process():
        console.print(f"[bold]unlearn run[/] method={cfg.method.name} model={cfg.model.model} "
                      f"forget={cfg.data.forget} out={cfg.out}", highlight=False)
    from unlearnkit.progress import TrainProgress

    with progress_bars() as progress:
        train_bar = TrainProgress(progress, f"train {cfg.method.name}")
        record = run(cfg, progress, callbacks=[LogLines(), train_bar],
                     say=lambda m: console.print(m, highlight=False) if is_main_process() else None)
    if not is_main_process():  # under torchrun / accelerate launch, rank 0 reports
        return
    from unlearnkit.cli.eval import summary_table

    if record.get("forget_accuracy_checks"):
        last = record["forget_accuracy_checks"][-1]
        reached = "reached" if record["stopped_at_step"] is not None else "not reached"
        console.print(f"stop at forget accuracy <= {cfg.eval.stop_at_forget_accuracy}: {reached}, last check "
                      f"step {last['step']} -> {last['forget_accuracy']:.3f}", highlight=False)
    if record.get("routing"):
        r, share = record["routing"], record["routing"]["expert_share"]
        console.print(f"routing overlap forget {r['overlap_forget']:.2f} / retain {r['overlap_retain']:.2f}; "
                      f"expert L{r['watched']['layer']} E{r['watched']['expert']} in the top-k of forget "
                      f"tokens {share['forget']['before']:.2f} -> {share['forget']['after']:.2f}, retain "
                      f"{share['retain']['before']:.2f} -> {share['retain']['after']:.2f} (diagnostics/)",
                      highlight=False)
    if record.get("truncated"):
        console.print(f"[yellow]{record['truncated']} training examples were cut at data.max_length="
                      f"{cfg.data.max_length} tokens[/]", highlight=False)
    summary = record.get("summary")
    if summary and "forget_accuracy" in summary:  # a multiple-choice world
        console.print(" ".join(f"{k} {v:.3f}" for k, v in summary.items()), highlight=False)
    elif summary:
        console.print(summary_table(summary, f"{record['method']} on {cfg.data.forget}"))
    console.print(f"trained {record['trainable_params']:,} of {record['total_params']:,} parameters in "
                  f"{record['train_seconds']:.1f} s (peak RSS {record['train_peak_rss'] / 2**20:,.0f} MiB); "
                  f"artifact {record['artifact_bytes'] / 1e6:.2f} MB; "
                  f"wrote {cfg.out}/", highlight=False)
