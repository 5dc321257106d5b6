"""`unlearn mcq`: multiple-choice accuracy (WMDP/MMLU layout) per file or per domain of a MoE world."""

from __future__ import annotations

from pathlib import Path

import typer

from unlearnkit.cli.app import app, console


@app.command("mcq")
def mcq_cmd(
    model: str = typer.Option(..., "--model", help="Local HF directory, smollm2-135m or hub ID."),
    data: list[str] = typer.Option(..., "--data", help="MC file(s) (JSON/JSONL/parquet, WMDP layout), a "
                                   "directory of mcq_<name>.jsonl, or a hub dataset "
                                   "org/name[:config[:split]] such as cais/wmdp:wmdp-bio (repeatable)."),
    forget: str = typer.Option(None, "--forget", help="Name of the forget set (others = utility)."),
    mode: str = typer.Option("option", "--mode", help="option (score each choice's text) or letter (A-D)."),
    norm: str = typer.Option("mean", "--norm", help="mean or sum of the choice's token log-probs."),
    out: Path = typer.Option(None, "--out", help="Write MCQ_EVAL.json here."),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
) -> None:
    """Accuracy by answer-option log-likelihood, per set; with --forget, also mean utility accuracy."""
    from rich.table import Table

    import unlearnkit.methods  # noqa: F401  (registers method artifacts, e.g. ULD's, with the loader)
    from unlearnkit.eval.mcq import (
        evaluate_domains,
        is_mcq_world,
        load_domain_sets,
        load_mcq,
        load_mcq_hub,
        world_forget_domain,
        write_mcq_eval,
    )
    from unlearnkit.hub import is_hub_id
    from unlearnkit.models.loading import load_model_and_tokenizer
    from unlearnkit.outputs import check_out_dir

    if out is not None:
        check_out_dir(out, False, {"--model": model, "--data": list(data)}, reusable=("MCQ_EVAL.json",))
    sets: dict[str, list[dict]] = {}
    for spec in data:
        path = Path(spec).expanduser()
        if path.is_dir():
            sets.update(load_domain_sets(path))
        elif path.exists() or not is_hub_id(spec.partition(":")[0]):
            sets[path.stem] = load_mcq(path)
        else:
            name, items = load_mcq_hub(spec)
            sets[name] = items
    if forget is None and len(data) == 1 and is_mcq_world(data[0]):
        forget = world_forget_domain(data[0])
    lm, tok = load_model_and_tokenizer(model)
    summary = evaluate_domains(lm, tok, sets, forget, mode, norm, batch_size)
    table = Table(title=f"multiple-choice accuracy ({mode}, {norm})")
    for col in ("set", "n", "accuracy"):
        table.add_column(col, justify="right" if col != "set" else "left")
    for name, res in summary["details"].items():
        label = f"{name} (forget)" if name == forget else name
        table.add_row(label, str(res["n"]), f"{res['accuracy']:.3f}")
    if forget is not None:
        table.add_row("utility (mean)", "", f"{summary['utility_accuracy']:.3f}")
    console.print(table)
    if out is not None:
        console.print(f"wrote {write_mcq_eval(out, summary, model=model)}", highlight=False)
