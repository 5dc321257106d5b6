"""Comparison of TOFU eval runs: markdown table, forget-quality vs model-utility plot, self-contained HTML."""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from unlearnkit.errors import UnlearnError
from unlearnkit.eval.tofu import (
    EVAL_FILE,
    META_FILE,
    SUMMARY_FILE,
    format_value,
    load_eval_log,
    recompute,
)
from unlearnkit.outputs import write_bytes, write_text

# (summary key, column header) of the comparison table.
COLUMNS = (
    ("forget_quality", "F.Q."),
    ("model_utility", "M.U."),
    ("forget_Q_A_ROUGE", "forget ROUGE-L"),
    ("retain_Q_A_ROUGE", "retain ROUGE-L"),
    ("forget_Q_A_Prob", "forget Prob"),
    ("forget_truth_ratio", "forget TR"),
    ("privleak", "privleak"),
)


@dataclass
class Run:
    """One eval output directory: its label, summary and meta."""

    name: str
    path: Path
    summary: dict
    meta: dict = field(default_factory=dict)


def load_run(path: str | Path) -> Run:
    """Read an `unlearn eval` directory (TOFU_SUMMARY.json, else recomputed from TOFU_EVAL.json)."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise UnlearnError(f"{path} is not a directory: pass `unlearn eval --out` directories")
    meta = json.loads((path / META_FILE).read_text()) if (path / META_FILE).is_file() else {}
    if (path / SUMMARY_FILE).is_file():
        summary = json.loads((path / SUMMARY_FILE).read_text())
    elif (path / EVAL_FILE).is_file():
        summary = recompute(load_eval_log(path))
    else:
        raise UnlearnError(f"{path} holds neither {SUMMARY_FILE} nor {EVAL_FILE}: run `unlearn eval` first")
    return Run(name=meta.get("name") or path.resolve().name, path=path, summary=summary, meta=meta)


def markdown_table(runs: list[Run]) -> str:
    head = "| run | " + " | ".join(h for _, h in COLUMNS) + " |"
    sep = "|---|" + "---:|" * len(COLUMNS)
    rows = ["| " + r.name + " | " + " | ".join(format_value(k, r.summary.get(k)) for k, _ in COLUMNS) + " |"
            for r in runs]
    return "\n".join([head, sep, *rows]) + "\n"


def plot_png(runs: list[Run]) -> bytes:
    """Forget quality (log scale) against model utility, one labelled point per run, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    points = [(r.summary.get("model_utility"), r.summary.get("forget_quality"), r.name) for r in runs]
    points = [(mu, max(fq, 1e-300), n) for mu, fq, n in points if mu is not None and fq is not None]
    for mu, fq, name in points:
        ax.scatter([mu], [fq], s=40)
        ax.annotate(name, (mu, fq), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_yscale("log")
    ax.margins(x=0.15, y=0.2)
    ax.set_xlabel("model utility")
    ax.set_ylabel("forget quality (KS p-value, log)")
    ax.grid(True, which="both", alpha=0.3)
    if not points:
        ax.text(0.5, 0.5, "no run has both forget_quality and model_utility\n(evaluate with --reference)",
                ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def render_html(runs: list[Run], png: bytes, title: str = "unlearnkit TOFU report") -> str:
    """One self-contained page: the table and the plot embedded as base64."""
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in COLUMNS)
    body = "".join(
        "<tr><td>" + html.escape(r.name) + "</td>"
        + "".join(f"<td>{html.escape(format_value(k, r.summary.get(k)))}</td>" for k, _ in COLUMNS) + "</tr>"
        for r in runs
    )
    img = base64.b64encode(png).decode("ascii")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}</style>
</head><body><h1>{html.escape(title)}</h1>
<table><tr><th>run</th>{head}</tr>{body}</table>
<p>F.Q.: KS-test p-value of forget truth ratios vs the retain model (higher is better);
M.U.: harmonic mean of the nine retain / real-authors / world-facts metrics.</p>
<img alt="forget quality vs model utility" src="data:image/png;base64,{img}">
</body></html>
"""


def write_report(dirs: list[str | Path], out: str | Path = "report.md") -> dict[str, Path]:
    """Write out (.md), and beside it the same stem as .html (self-contained) and .png."""
    if not dirs:
        raise UnlearnError("no eval directories given: pass one or more `unlearn eval --out` directories")
    runs = [load_run(d) for d in dirs]
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    png = plot_png(runs)
    kinds = (("markdown", ".md"), ("html", ".html"), ("png", ".png"))
    paths = {kind: out.with_suffix(ext) for kind, ext in kinds}
    md = "# TOFU report\n\n" + markdown_table(runs)
    md += f"\n![forget quality vs model utility]({paths['png'].name})\n"
    write_bytes(paths["png"], png)
    write_text(paths["markdown"], md)
    write_text(paths["html"], render_html(runs, png))
    return paths
