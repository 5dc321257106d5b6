"""`unlearn run`: unlearn a forget split with a method, save the result, evaluate it."""

from __future__ import annotations

from pathlib import Path

import typer
from transformers import TrainerCallback

from unlearnkit.cli.app import app, console
from unlearnkit.cli.progress import progress_bars

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


class LogLines(TrainerCallback):
    """One line per logging step: step, loss and each term the method logs."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs or not state.is_world_process_zero:
            return
        terms = "  ".join(f"{k}={v:.4g}" for k, v in logs.items()
                          if isinstance(v, float) and k not in ("epoch", "learning_rate", "grad_norm"))
        console.print(f"[dim]step {state.global_step:>5}  epoch {logs.get('epoch', 0):5.2f}[/]  {terms}",
                      highlight=False)


def method_config(method: str) -> Path | None:
    """The packaged configs/<method>.yaml holding the method's defaults, if there is one."""
    from unlearnkit.methods import get_method

    path = CONFIG_DIR / f"{get_method(method).name}.yaml"
    return path if path.is_file() else None


@app.command("run", context_settings={"allow_extra_args": False})
def run_cmd(
    args: list[str] = typer.Argument(None, help="[CONFIG.yaml] then dotted overrides, e.g. train.lr=1e-3"),
    method: str = typer.Option(None, "--method", help="uld, ga, gd, kl, npo, npo_gd, npo_kl, dpo, ..."),
    model: str = typer.Option(None, "--model", help="Target: local HF dir, preset or smollm2-135m."),
    data: str = typer.Option(None, "--data", help="Directory of TOFU split files."),
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
) -> None:
    """Unlearn FORGET from MODEL with METHOD; writes model/, eval/, config.yaml and run.json to OUT.

    Checkpoints go to OUT.checkpoints/ each epoch (train.save_strategy=no|epoch|steps) and are removed
    when the run succeeds; after a crash or kill, the same command with --resume continues.
    """
    from unlearnkit.config import load_config
    from unlearnkit.pipeline import is_main_process, run

    args = list(args or [])
    config_path = args.pop(0) if args and args[0].endswith((".yaml", ".yml")) else None
    flags = {"method.name": method, "model.model": model, "data.data": data, "data.forget": forget,
             "out": out, "eval.reference": reference, "train.seed": seed, "train.epochs": epochs,
             "train.lr": lr, "train.lora.r": lora_r, "eval.max_samples": max_samples,
             "eval.stop_at_forget_accuracy": stop_at, "method.params.augment_file": augment_file}
    overrides = [f"{k}={v}" for k, v in flags.items() if v is not None]
    overrides += ["overwrite=true"] * overwrite + ["eval.enabled=false"] * no_eval + ["resume=true"] * resume
    overrides += ["model.trust_remote_code=true"] * trust_remote_code
    overrides += ["data.allow_eval_overlap=true"] * allow_eval_overlap
    if config_path is None and method is not None:
        config_path = method_config(method)
    cfg = load_config(config_path, overrides + args)
    if is_main_process():
        console.print(f"[bold]unlearn run[/] method={cfg.method.name} model={cfg.model.model} "
                      f"forget={cfg.data.forget} out={cfg.out}", highlight=False)
    with progress_bars() as progress:
        record = run(cfg, progress, callbacks=[LogLines()],
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
    summary = record.get("summary")
    if summary and "forget_accuracy" in summary:  # a multiple-choice world
        console.print(" ".join(f"{k} {v:.3f}" for k, v in summary.items()), highlight=False)
    elif summary:
        console.print(summary_table(summary, f"{record['method']} on {cfg.data.forget}"))
    console.print(f"trained {record['trainable_params']:,} of {record['total_params']:,} parameters in "
                  f"{record['train_seconds']:.1f} s; artifact {record['artifact_bytes'] / 1e6:.2f} MB; "
                  f"wrote {cfg.out}/", highlight=False)
