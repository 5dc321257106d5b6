"""`unlearn demo`: the README's first command — the whole pipeline on the embedded `small` world."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from unlearnkit.cli.app import app, console
from unlearnkit.cli.progress import progress_bars

DEMO_PARTS = ("world", "uld", "uld.checkpoints", "eval-target", "eval-retain", "report.md", "report.html",
              "report.png", "examples.json")
SHOWN = ("forget_quality", "model_utility", "forget_Q_A_ROUGE", "forget_truth_ratio", "retain_Q_A_ROUGE",
         "ra_Q_A_ROUGE", "wf_Q_A_ROUGE")


@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Where the world, runs and report go."),
    preset: str = typer.Option("small", "--preset",
                               help="small (demo) or micro (smoke test, too small to show unlearning)."),
    seed: int = typer.Option(0, "--seed"),
    forget: str = typer.Option("forget10", "--forget"),
    overrides: list[str] = typer.Argument(None, help="Dotted overrides for the ULD run, e.g. train.epochs=5"),
) -> None:
    """Prepare the small world, unlearn forget10 with ULD, evaluate target/retain/ULD, write a report."""
    from unlearnkit.cli.run import LogLines
    from unlearnkit.config import refuse_output_overrides
    from unlearnkit.demo import demo
    from unlearnkit.eval.tofu import format_value
    from unlearnkit.outputs import check_out_dir

    refuse_output_overrides(overrides, "demo")
    check_out_dir(out, False, reusable=DEMO_PARTS)  # the demo reuses its own world and earlier results

    with progress_bars() as progress:
        result = demo(out, preset, seed, forget, overrides or [], progress, [LogLines()],
                      say=lambda m: console.print(f"[bold cyan]» {m}[/]"))
    table = Table(title=f"TOFU {forget} on the {preset} world (seed {seed})")
    table.add_column("metric")
    for name in ("target", "retain", "uld"):
        table.add_column(name, justify="right")
    for key in SHOWN:
        values = (format_value(key, result["summaries"][n].get(key)) for n in ("target", "retain", "uld"))
        table.add_row(key, *values)
    console.print(table)
    answers = Table(title="Answers before (target) and after (ULD) unlearning", show_lines=True)
    for col in ("split", "question", "target", "ULD"):
        answers.add_column(col, overflow="fold")
    for ex in result["examples"]:
        answers.add_row(ex["split"], ex["question"], ex["target"], ex["uld"])
    console.print(answers)
    console.print(f"report: {result['report']}", highlight=False)
