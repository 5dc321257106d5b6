"""`unlearn eval`: TOFU evaluation of a model, or `--recompute` of a saved TOFU_EVAL.json."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import typer
import yaml
from rich.table import Table

from unlearnkit.cli.app import app, console
from unlearnkit.cli.progress import progress_bars
from unlearnkit.errors import UnlearnError
from unlearnkit.outputs import write_text


def summary_table(summary: dict, title: str = "TOFU") -> Table:
    from unlearnkit.eval.tofu import SUMMARY_KEYS, format_value

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in SUMMARY_KEYS:
        if key in summary:
            table.add_row(key, format_value(key, summary[key]))
        elif key == "forget_quality":
            table.add_row(key, "n/a (no --reference)")
    return table


@contextmanager
def eval_progress():
    """Rich bars on a terminal; otherwise (a log file, a pipe) plain progress lines, flushed, at most one
    per metric pass every 10 % or 30 s, so a long eval shows it is alive."""
    if console.is_terminal:
        with progress_bars() as progress:
            yield progress
        return
    start = time.time()

    def progress(desc: str, total: int):
        state = {"done": 0, "printed": -1.0, "at": time.time()}

        def advance(n: int) -> None:
            state["done"] += n
            frac = state["done"] / max(total, 1)
            now = time.time()
            if frac >= 1 or frac - state["printed"] >= 0.1 or now - state["at"] >= 30:
                state["printed"], state["at"] = frac, now
                print(f"eval {desc}: {state['done']}/{total} ({now - start:.0f} s)", flush=True)

        return advance

    yield progress


@app.command("eval")
def eval_cmd(
    model: str = typer.Option(None, "--model", help="Local HF/ULD directory, preset, or smollm2-135m."),
    data: Path = typer.Option(None, "--data", help="Directory of TOFU split files (<split>.jsonl)."),
    forget: str = typer.Option("forget10", "--forget", help="Forget split: forget01, forget05, forget10."),
    reference: Path = typer.Option(
        None, "--reference", help="Retain model's TOFU_EVAL.json (or its directory), for forget_quality."),
    out: Path = typer.Option(None, "--out", help="Output directory."),
    max_samples: int = typer.Option(None, "--max-samples", min=1, help="First N rows of each split."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Scoring batch (answers per forward)."),
    gen_batch_size: int = typer.Option(64, "--gen-batch-size", min=1,
                                       help="Greedy generation batch (ROUGE); larger is cheaper per token."),
    max_new_tokens: int = typer.Option(200, "--max-new-tokens", min=1, help="Greedy generation length."),
    seed: int = typer.Option(0, "--seed"),
    name: str = typer.Option(None, "--name", help="Row label in reports (default: output dir name)."),
    tokenizer: str = typer.Option(None, "--tokenizer", help="Tokenizer dir (needed for a preset model)."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code"),
    threads: int = typer.Option(
        None, "--threads", min=1, help="torch CPU threads (1 is fastest for tiny models on busy machines)."),
    recompute_path: Path = typer.Option(
        None, "--recompute", help="Recompute the summary of a TOFU_EVAL.json from per-sample values."),
    prompt_format: str = typer.Option(
        "chat", "--prompt-format", help="chat (tokenizer template), plain, or open-unlearning (its TOFU "
                                        "formatting token for token, for comparable numbers)."),
    system_prompt: str = typer.Option(
        None, "--system-prompt", help="System message (default: the format's; open-unlearning: per model)."),
) -> None:
    """Evaluate a model on TOFU (open-unlearning's metrics), or recompute a saved log's summary."""
    from unlearnkit.data.formatting import PROMPT_FORMATS
    from unlearnkit.eval import tofu

    if prompt_format not in PROMPT_FORMATS:
        raise UnlearnError(f"unknown --prompt-format {prompt_format!r}: choose {', '.join(PROMPT_FORMATS)}")
    ref = tofu.load_reference(reference) if reference is not None else None
    if recompute_path is not None:
        summary = tofu.recompute(tofu.load_eval_log(recompute_path), ref)
        console.print(summary_table(summary, f"TOFU (recomputed from {recompute_path})"))
        typer.echo(tofu.summary_markdown(summary))
        return
    missing = [flag for flag, v in (("--model", model), ("--data", data), ("--out", out)) if v is None]
    if missing:
        raise UnlearnError(f"missing {', '.join(missing)}: eval needs --model, --data and --out "
                           "(or --recompute TOFU_EVAL.json)")
    import torch

    from unlearnkit.data.formatting import set_prompt_format
    from unlearnkit.models.loading import load_model_and_tokenizer

    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    start = time.time()
    kwargs = {"tokenizer": tokenizer} if tokenizer else {}
    mdl, tok = load_model_and_tokenizer(model, trust_remote_code=trust_remote_code, seed=seed, **kwargs)
    fmt = set_prompt_format(tok, prompt_format, system_prompt).describe()
    if reference is not None:
        tofu.check_reference_format(reference, fmt)
    passes: dict[str, dict] = {}
    with eval_progress() as bars:
        def progress(desc: str, total: int):  # also times each pass, for eval_meta.json and benchmarks
            advance, t0 = bars(desc, total), time.perf_counter()
            passes[desc] = {"n": total, "seconds": 0.0}

            def step(n: int) -> None:
                advance(n)
                passes[desc]["seconds"] = round(time.perf_counter() - t0, 3)

            return step

        summary, log = tofu.evaluate_tofu(mdl, tok, data, forget, ref, max_samples, batch_size,
                                          max_new_tokens, progress, gen_batch_size)
    args = {"model": model, "data": str(data), "forget": forget,
            "reference": str(reference) if reference else None, "out": str(out),
            "max_samples": max_samples, "batch_size": batch_size, "gen_batch_size": gen_batch_size,
            "max_new_tokens": max_new_tokens,
            "seed": seed, "tokenizer": tokenizer, "trust_remote_code": trust_remote_code, "threads": threads,
            "prompt_format": prompt_format, "system_prompt": system_prompt}
    meta = {"name": name or out.resolve().name, "model": model,
            "model_class": type(mdl).__name__, "n_params": sum(p.numel() for p in mdl.parameters()),
            "seconds": round(time.time() - start, 2), **args, "prompt_format": fmt, "passes": passes}
    meta["n_samples"] = {k[: -len("_Q_A_Prob")]: len(v["value_by_index"])
                         for k, v in log.items() if k.endswith("_Q_A_Prob")}
    tofu.write_eval(out, summary, log, meta=meta)
    write_text(out / "config.yaml", yaml.safe_dump({"command": "eval", **args}, sort_keys=False))
    console.print(summary_table(summary, f"TOFU {forget}: {meta['name']}"))
    console.print(f"wrote {out}/ (TOFU_EVAL.json, TOFU_SUMMARY.json/.md, TOFU_GENERATIONS.jsonl) "
                  f"in {meta['seconds']:.1f} s")
