"""`unlearn report`: compare eval directories in a markdown table, an HTML page and a plot."""

from __future__ import annotations

from pathlib import Path

import typer

from unlearnkit.cli.app import app, console
from unlearnkit.errors import UnlearnError


@app.command("report")
def report_cmd(
    dirs: list[Path] = typer.Argument(..., help="Any mix of `unlearn run` outputs, `unlearn eval` outputs "
                                                "and TOFU_SUMMARY.json files."),
    out: Path = typer.Option(Path("report.md"), "--out", help="Markdown file; .html and .png go beside it."),
) -> None:
    """Markdown + self-contained HTML + PNG (forget quality vs model utility) over evaluated models."""
    from unlearnkit.outputs import check_out_file
    from unlearnkit.report import load_runs, markdown_table, write_report

    if out.name in ("", ".", ".."):  # with_suffix would fail or write "...md"
        raise UnlearnError(f"--out {out} names no file: give a markdown file such as report.md "
                           "(the .html and .png go beside it)")
    for suffix in (".md", ".html", ".png"):  # the three files written, checked before any reading
        check_out_file(out.with_suffix(suffix), {"run": list(dirs)})
    paths = write_report(dirs, out)
    typer.echo(markdown_table(load_runs(dirs)))
    console.print(f"wrote {paths['markdown']}, {paths['html']}, {paths['png']}")
