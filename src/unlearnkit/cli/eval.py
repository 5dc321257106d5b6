"""`unlearn eval`: TOFU evaluation of a model, or `--recompute` of a saved TOFU_EVAL.json."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
import yaml
from rich.table import Table

from unlearnkit.cli.app import app, console
from unlearnkit.cli.progress import progress_bars
from unlearnkit.config import DEFAULT_SEED
from unlearnkit.errors import UnlearnError
from unlearnkit.models.device import DEVICE_HELP, DTYPE_HELP
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


@app.command("eval")
def eval_cmd(
    model: str = typer.Option(None, "--model", help="Local HF/ULD folder, preset, smollm2-135m or hub ID."),
    data: str = typer.Option(None, "--data", help="TOFU folder (JSONL/JSON/parquet) or hub dataset."),
    forget: str = typer.Option("forget10", "--forget", help="Forget split: forget01, forget05, forget10."),
    reference: Path = typer.Option(
        None, "--reference", help="Retain model dir or its TOFU_EVAL.json/eval dir (for forget_quality)."),
    out: Path = typer.Option(None, "--out", help="Output directory."),
    max_samples: int = typer.Option(None, "--max-samples", min=1,
                                    help="Evaluate the first N rows of each split."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Scoring batch (answers per forward)."),
    gen_batch_size: int = typer.Option(64, "--gen-batch-size", min=1,
                                       help="Greedy generation batch (ROUGE); larger is cheaper per token."),
    max_new_tokens: int = typer.Option(200, "--max-new-tokens", min=1, help="Greedy generation length."),
    seed: int = typer.Option(DEFAULT_SEED, "--seed"),
    name: str = typer.Option(None, "--name", help="Row label in reports (default: output dir name)."),
    tokenizer: str = typer.Option(None, "--tokenizer", help="Tokenizer dir (needed for a preset model)."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code"),
    device: str = typer.Option(None, "--device", help=DEVICE_HELP),
    dtype: str = typer.Option(None, "--dtype", help=DTYPE_HELP),
    threads: int = typer.Option(
        None, "--threads", min=1, help="torch CPU threads (1 is fastest for tiny models on busy machines)."),
    recompute_path: Path = typer.Option(
        None, "--recompute", help="Recompute the summary of a TOFU_EVAL.json from per-sample values "
                                  "(with --out: TOFU_SUMMARY.json/.md written there)."),
    weight: float = typer.Option(None, "--weight", help="ULD artifact only: the logit-difference weight w "
                                                        "(default: the artifact's)."),
    filter_factor: float = typer.Option(None, "--filter-factor",
                                        help="ULD artifact only: the filter f (default: the artifact's)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out."),
    prompt_format: str = typer.Option(
        "chat", "--prompt-format", help="chat (tokenizer template), plain, or open-unlearning (its TOFU "
                                        "formatting token for token, for comparable numbers)."),
    system_prompt: str = typer.Option(
        None, "--system-prompt", help="System message (default: the format's; open-unlearning: per model)."),
) -> None:
    """Evaluate a model on TOFU (open-unlearning's metrics), or recompute a saved log's summary."""
    from unlearnkit.data.formatting import PROMPT_FORMATS
    from unlearnkit.eval import tofu
    from unlearnkit.outputs import atomic_dir, check_out_dir

    if prompt_format not in PROMPT_FORMATS:
        raise UnlearnError(f"unknown --prompt-format {prompt_format!r}: choose {', '.join(PROMPT_FORMATS)}")
    inputs = {"--model": model, "--data": data, "--reference": reference, "--tokenizer": tokenizer,
              "--recompute": recompute_path}
    if recompute_path is not None:
        if out is not None:
            check_out_dir(out, overwrite, inputs, reusable=(tofu.SUMMARY_FILE, tofu.SUMMARY_MD))
        ref = tofu.load_reference(reference) if reference is not None else None
        summary, notes = tofu.recompute_with_notes(tofu.load_eval_log(recompute_path), ref)
        for note in notes:
            console.print(f"[yellow]warning:[/] {note}", highlight=False, soft_wrap=True)
        console.print(summary_table(summary, f"TOFU (recomputed from {recompute_path})"))
        typer.echo(tofu.summary_markdown(summary))
        if out is not None:
            with atomic_dir(out, True, inputs) as tmp:
                for old in (tofu.SUMMARY_FILE, tofu.SUMMARY_MD):
                    if (out / old).is_file():  # keep what a recompute into this dir wrote before
                        (tmp / old).write_bytes((out / old).read_bytes())
                write_text(tmp / tofu.SUMMARY_FILE, json.dumps(summary, indent=4))
                write_text(tmp / tofu.SUMMARY_MD, tofu.summary_markdown(summary, f"recomputed from "
                                                                                 f"{recompute_path}"))
            console.print(f"wrote {out}/ (TOFU_SUMMARY.json/.md)", highlight=False)
        return
    missing = [flag for flag, v in (("--model", model), ("--data", data), ("--out", out)) if v is None]
    if missing:
        raise UnlearnError(f"missing {', '.join(missing)}: eval needs --model, --data and --out "
                           "(or --recompute TOFU_EVAL.json)")
    check_out_dir(out, overwrite, inputs)  # before any work: a bad --out fails now, not after scoring
    from unlearnkit.methods.uld import ULDModel, check_overrides

    check_overrides(model, weight, filter_factor)
    from unlearnkit.pipeline import reference_kind, reference_warning

    ref_kind = reference_kind(str(reference)) if reference is not None else None
    ref = tofu.load_reference(reference) if ref_kind == "log" else None
    warning = reference_warning(str(reference), forget) if reference is not None else None
    if warning:
        console.print(f"[bold yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    import torch

    import unlearnkit.methods  # noqa: F401  (registers method artifacts, e.g. ULD's, with the loader)
    from unlearnkit.data.formatting import set_prompt_format
    from unlearnkit.models.device import Placement
    from unlearnkit.models.loading import load_model_and_tokenizer
    from unlearnkit.progress import silence_hf_progress

    silence_hf_progress()  # before loading: no "Loading weights" bar
    placement = Placement.resolve(device, dtype)
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    start = time.time()
    kwargs = {"tokenizer": tokenizer} if tokenizer else {}
    mdl, tok = load_model_and_tokenizer(model, trust_remote_code=trust_remote_code, seed=seed,
                                        dtype=placement.loader_dtype, **kwargs)
    if weight is not None:  # w and f act at inference only: one trained assistant, any number of evaluations
        mdl.weight = weight
    if filter_factor is not None:
        mdl.filter_factor = filter_factor
    mdl = placement.apply(mdl)
    fmt = set_prompt_format(tok, prompt_format, system_prompt).describe()
    if ref_kind == "log":
        tofu.check_reference_format(reference, fmt)
    from unlearnkit.progress import labelled, timed

    label = name or out.resolve().name
    with atomic_dir(out, overwrite, inputs) as tmp, progress_bars() as progress:
        if ref_kind == "model":  # a retain model folder: score it first, into OUT/reference/
            ref_model, ref_tok = load_model_and_tokenizer(str(reference), trust_remote_code=trust_remote_code,
                                                          seed=seed, dtype=placement.loader_dtype, **kwargs)
            ref_model = placement.apply(ref_model)
            set_prompt_format(ref_tok, prompt_format, system_prompt)
            ref_summary, ref_log = tofu.evaluate_tofu(ref_model, ref_tok, data, forget, None, max_samples,
                                                      batch_size, max_new_tokens,
                                                      labelled(progress, f"reference: {reference}"),
                                                      gen_batch_size)
            tofu.write_eval(tmp / "reference", ref_summary, ref_log,
                            meta={"name": f"retain ({reference.name})", "model": str(reference),
                                  "forget": forget, "max_samples": max_samples, "prompt_format": fmt})
            del ref_model
            ref = tofu.load_reference(tmp / "reference")
        passes: dict[str, dict] = {}  # seconds per metric pass, for eval_meta.json and benchmarks
        scored = timed(labelled(progress, f"{label}: {model}"), passes)
        summary, log = tofu.evaluate_tofu(mdl, tok, data, forget, ref, max_samples, batch_size,
                                          max_new_tokens, scored, gen_batch_size)
        args = {"model": model, "data": str(data), "forget": forget,
                "reference": str(reference) if reference else None, "out": str(out),
                "max_samples": max_samples, "batch_size": batch_size, "gen_batch_size": gen_batch_size,
                "max_new_tokens": max_new_tokens, "seed": seed, "tokenizer": tokenizer,
                "trust_remote_code": trust_remote_code, "threads": threads, "device": device, "dtype": dtype,
                "prompt_format": prompt_format, "system_prompt": system_prompt, "weight": weight,
                "filter_factor": filter_factor}
        meta = {"name": label, "model": model,
                "model_class": type(mdl).__name__, "n_params": sum(p.numel() for p in mdl.parameters()),
                "seconds": round(time.time() - start, 2), **args, **placement.record(),
                "prompt_format": fmt, "passes": passes}
        if isinstance(mdl, ULDModel):  # the w and f the scores were computed with
            meta["uld"] = {"weight": mdl.weight, "filter_factor": mdl.filter_factor}
        meta["n_samples"] = {k[: -len("_Q_A_Prob")]: len(v["value_by_index"])
                             for k, v in log.items() if k.endswith("_Q_A_Prob")}
        tofu.write_eval(tmp, summary, log, meta=meta)
        write_text(tmp / "config.yaml", yaml.safe_dump({"command": "eval", **args}, sort_keys=False))
    console.print(summary_table(summary, f"TOFU {forget}: {meta['name']}"))
    console.print(f"wrote {out}/ (TOFU_EVAL.json, TOFU_SUMMARY.json/.md, TOFU_GENERATIONS.jsonl) "
                  f"in {meta['seconds']:.1f} s")
