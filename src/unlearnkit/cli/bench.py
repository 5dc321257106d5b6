"""`unlearn bench`: methods side by side (cost, memory, TOFU scores) and ULD vs target decoding speed."""

from __future__ import annotations

import shlex
import sys

import typer

from unlearnkit.cli.app import app, console, deprecated_alias
from unlearnkit.config import DEFAULT_SEED


def _csv(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


@app.command("bench")
def bench_cmd(
    out: str = typer.Option(..., "--out", help="Output directory: bench.json, bench.md, plots, runs/."),
    preset: str = typer.Option("small", "--preset", help="World to prepare/reuse: micro or small."),
    methods: str = typer.Option(",".join(("uld", "kl", "gd", "npo_gd", "npo_kl", "dpo_kl")), "--methods",
                                help="Comma-separated method names."),
    forget: str = typer.Option("forget10", "--forget"),
    epochs: int = typer.Option(3, "--epochs", min=1, help="Epochs per method (the first is warm-up)."),
    model: str = typer.Option(None, "--model", help="Target model dir or hub ID (instead of the preset's)."),
    data: str = typer.Option(None, "--data", help="TOFU folder (JSONL/JSON/parquet) or hub dataset."),
    reference: str = typer.Option(None, "--reference", help="Retain model dir or its TOFU_EVAL.json."),
    world: str = typer.Option(None, "--world", help="Where to prepare the preset "
                                                    "(default runs/worlds/<preset>-<world-seed>)."),
    world_seed: int = typer.Option(0, "--world-seed"),
    seed: int = typer.Option(DEFAULT_SEED, "--seed", help="Training seed of every method."),
    threads: int = typer.Option(None, "--threads", min=1,
                                help="Threads per worker (default $OMP_NUM_THREADS or all cores)."),
    max_train_samples: int = typer.Option(None, "--max-train-samples", min=1,
                                          help="Train on the first N forget rows."),
    eval_max_samples: int = typer.Option(None, "--max-samples", min=1,
                                         help="Evaluate the first N rows of each split (as in run/eval)."),
    old_eval_max_samples: int = typer.Option(None, "--eval-max-samples", min=1, hidden=True),
    eval_max_new_tokens: int = typer.Option(200, "--eval-max-new-tokens", min=1),
    decode_tokens: int = typer.Option(64, "--decode-tokens", min=1, help="New tokens per decoding prompt."),
    decode_batch: str = typer.Option("1,16", "--decode-batch", help="Comma-separated decoding batch sizes."),
    decode_rounds: int = typer.Option(3, "--decode-rounds", min=1, help="Timed rounds (median reported)."),
    overrides: list[str] = typer.Option(None, "--set", help="Override for every method (train.lr=1e-4) "
                                        "or one (uld:method.params.num_layers=2); repeatable."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Reuse a non-empty --out."),
    device: str = typer.Option(None, "--device", help="Decoding/reference-eval device: cuda, cuda:N, mps "
                               "or cpu (default: CUDA, then MPS, else CPU)."),
    dtype: str = typer.Option(None, "--dtype", help="Decoding/reference-eval dtype: fp32, bf16 or fp16."),
) -> None:
    """Train each method in its own process, evaluate it, time decoding; write bench.json/.md and plots."""
    from unlearnkit.bench import BenchConfig, bench
    if eval_max_samples is not None:
        console.print("[yellow]note:[/] bench --max-samples limits evaluation rows, as in run and eval "
                      "(training rows: --max-train-samples)", highlight=False, soft_wrap=True)
    eval_max_samples = deprecated_alias("--eval-max-samples", old_eval_max_samples, "--max-samples",
                                        eval_max_samples)

    try:
        batch_sizes = tuple(int(b) for b in _csv(decode_batch))
    except ValueError:
        from unlearnkit.errors import UnlearnError

        raise UnlearnError(f"--decode-batch {decode_batch!r} must be comma-separated integers, "
                           "e.g. 1,16") from None
    cfg = BenchConfig(
        out=out, preset=preset, model=model, data=data, reference=reference, world=world,
        world_seed=world_seed, forget=forget, methods=_csv(methods), epochs=epochs, seed=seed,
        threads=threads, max_samples=max_train_samples, eval_max_samples=eval_max_samples,
        eval_max_new_tokens=eval_max_new_tokens, decode_tokens=decode_tokens,
        decode_batch_sizes=batch_sizes, decode_rounds=decode_rounds, overrides=tuple(overrides or ()),
        overwrite=overwrite, device=device, dtype=dtype,
        command="unlearn " + shlex.join(sys.argv[1:]),
    )
    record = bench(cfg, say=lambda msg: console.print(msg, highlight=False))
    from unlearnkit.report.bench import decode_table, method_table, targets_table

    console.print(method_table(record), highlight=False, soft_wrap=True)
    console.print(decode_table(record), highlight=False, soft_wrap=True)
    if record.get("targets"):
        console.print(targets_table(record), highlight=False, soft_wrap=True)
