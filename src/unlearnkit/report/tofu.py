"""Comparison of TOFU eval runs: markdown table, forget-quality vs model-utility plot, self-contained HTML."""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from unlearnkit.costs import time_per_epoch
from unlearnkit.data.jsonl import read_jsonl
from unlearnkit.errors import UnlearnError
from unlearnkit.eval.tofu import (
    EVAL_FILE,
    GENERATIONS_FILE,
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
    ("ra_Q_A_ROUGE", "real authors ROUGE-L"),
    ("wf_Q_A_ROUGE", "world facts ROUGE-L"),
    ("forget_Q_A_Prob", "forget Prob"),
    ("forget_truth_ratio", "forget TR"),
    ("privleak", "privleak"),
)


RUN_FILE = "run.json"  # an `unlearn run` output: settings here, its evaluation in eval/
SAMPLE_SPLITS = (("forget", "forget"), ("retain", "retain"), ("wf", "world fact"))


@dataclass
class Run:
    """One evaluated model: its label, summary, eval meta, and (for `unlearn run` outputs) settings."""

    name: str
    path: Path
    summary: dict
    meta: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)  # method, key training settings, times
    samples: list[dict] = field(default_factory=list)  # one generation per SAMPLE_SPLITS entry


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UnlearnError(f"{path} is not readable JSON ({err}): pass an intact output") from None
    if not isinstance(data, dict):
        raise UnlearnError(f"{path} is not a JSON object: pass a TOFU_SUMMARY.json or an output directory")
    return data


def _locate(path: Path) -> tuple[Path, Path | None, Path]:
    """(eval dir, run dir or None, summary-or-eval file) for a run folder, an eval folder or a summary."""
    if path.is_file():
        if path.suffix != ".json":
            raise UnlearnError(f"{path} is not a TOFU_SUMMARY.json: pass run folders, eval folders or "
                               "TOFU_SUMMARY.json files")
        eval_dir, file = path.parent, path
    elif path.is_dir():
        eval_dir = path / "eval" if (path / RUN_FILE).is_file() and (path / "eval").is_dir() else path
        file = next((eval_dir / f for f in (SUMMARY_FILE, EVAL_FILE) if (eval_dir / f).is_file()), None)
        if file is None:
            hint = ("it is an `unlearn run` output evaluated as multiple choice (MCQ_EVAL.json), which this "
                    "TOFU report does not cover" if (eval_dir / "MCQ_EVAL.json").is_file() else
                    "evaluate it first (`unlearn eval`, or `unlearn run` without --no-eval)")
            raise UnlearnError(f"{path} holds no {SUMMARY_FILE} or {EVAL_FILE} (nor eval/ of a run): {hint}")
    else:
        raise UnlearnError(f"{path} does not exist: pass run folders, eval folders or "
                           "TOFU_SUMMARY.json files")
    run_dir = eval_dir.parent if (eval_dir.parent / RUN_FILE).is_file() and eval_dir.name == "eval" else None
    return eval_dir, run_dir, file


def run_settings(run_dir: Path) -> dict:
    """Method, key training settings and times of an `unlearn run` output, from its run.json."""
    record = _read_json(run_dir / RUN_FILE)
    train = record.get("train") or {}
    keep = ("lr", "epochs", "batch_size", "grad_accum", "warmup_ratio", "weight_decay", "max_steps")
    settings = {"method": record.get("method"), "forget": record.get("forget"), "seed": record.get("seed"),
                **{k: train[k] for k in keep if train.get(k) not in (None, -1)}}
    if train.get("lora"):
        settings["lora_r"] = train["lora"].get("r")
    params = record.get("params") or {}
    settings["params"] = ", ".join(f"{k}={v}" for k, v in params.items()
                                   if isinstance(v, (int, float, str, bool)) and v is not None)
    settings |= {"steps": record.get("global_steps"), "train_seconds": record.get("train_seconds"),
                 "time_per_epoch_seconds": time_per_epoch(record.get("epoch_seconds") or []),
                 "train_peak_rss": record.get("train_peak_rss"),  # absent in runs before 2026-12-03
                 "trainable_params": record.get("trainable_params")}
    if record.get("best_epoch") is not None:
        settings["best_epoch"] = record["best_epoch"]
    return {k: v for k, v in settings.items() if v not in (None, "")}


def sample_generations(eval_dir: Path) -> list[dict]:
    """The first generation of the forget, retain and world-fact splits (TOFU_GENERATIONS.jsonl)."""
    path = eval_dir / GENERATIONS_FILE
    try:  # samples only illustrate a report: a missing or damaged file leaves them out
        rows = read_jsonl(path)
    except UnlearnError:
        rows = []
    picked = []
    for split, label in SAMPLE_SPLITS:
        row = min((r for r in rows if r.get("split") == split), key=lambda r: r.get("index", 0), default=None)
        if row is not None:
            picked.append({"split": label, "question": row.get("question"), "answer": row.get("answer"),
                           "generation": row.get("generation")})
    return picked


def load_run(path: str | Path) -> Run:
    """An `unlearn run` output (eval in eval/, settings in run.json), an `unlearn eval` directory, or a
    TOFU_SUMMARY.json; the summary is recomputed from TOFU_EVAL.json when only that is there."""
    path = Path(path).expanduser()
    eval_dir, run_dir, file = _locate(path)
    meta = _read_json(eval_dir / META_FILE) if (eval_dir / META_FILE).is_file() else {}
    if file.name == EVAL_FILE:
        summary = recompute(load_eval_log(file))
    else:
        summary = _read_json(file)
    # A run is labelled by its folder (its eval meta names only the method); an eval by its --name.
    name = run_dir.resolve().name if run_dir else meta.get("name") or eval_dir.resolve().name
    settings = run_settings(run_dir) if run_dir else {}
    if meta.get("seconds") is not None:
        settings["eval_seconds"] = meta["seconds"]
    return Run(name=name, path=path, summary=summary, meta=meta, settings=settings,
               samples=sample_generations(eval_dir))


def unique_labels(runs: list[Run]) -> list[Run]:
    """Repeated labels get their folder (or its parent) appended, then a counter: rows never merge."""
    def clashes() -> set[str]:
        names = [r.name for r in runs]
        return {n for n in names if names.count(n) > 1}

    dup = clashes()
    for r in runs:
        if r.name in dup:
            folder = (r.path.parent if r.path.is_file() else r.path).resolve()
            r.name = f"{r.name} ({folder.parent.name if folder.name == r.name else folder.name})"
    dup, seen = clashes(), {}
    for r in runs:
        if r.name in dup:
            seen[r.name] = seen.get(r.name, 0) + 1
            r.name = f"{r.name} #{seen[r.name]}"
    return runs


def load_runs(paths: list[str | Path]) -> list[Run]:
    """load_run on each path, labels made unique."""
    if not paths:
        raise UnlearnError("nothing to report: pass run folders, eval folders or TOFU_SUMMARY.json files")
    return unique_labels([load_run(p) for p in paths])


def _table(headers: list[str], rows: list[list[str]]) -> str:
    """A markdown table: the first column (run names) left-aligned, the numbers right-aligned."""
    lines = ["| run | " + " | ".join(headers) + " |", "|---|" + "---:|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def markdown_table(runs: list[Run]) -> str:
    return _table([h for _, h in COLUMNS],
                  [[r.name, *(format_value(k, r.summary.get(k)) for k, _ in COLUMNS)] for r in runs])


# (settings key, column header) of the cost table: `unlearn run` outputs only.
COST_COLUMNS = (
    ("method", "method"), ("lr", "lr"), ("epochs", "epochs"), ("steps", "steps"),
    ("time_per_epoch_seconds", "time/epoch"), ("train_seconds", "train time"), ("train_peak_rss", "peak RSS"),
    ("trainable_params", "trainable params"), ("eval_seconds", "eval time"),
)


def cost_table(runs: list[Run]) -> str:
    """Training cost of the `unlearn run` outputs among `runs` (time/epoch: median without the first
    epoch; peak RSS: the run's process at the end of training); empty when there is none."""
    trained = [r for r in runs if "train_seconds" in r.settings]
    if not trained:
        return ""
    return _table([h for _, h in COST_COLUMNS],
                  [[r.name, *(_fmt_setting(k, r.settings[k]) if r.settings.get(k) is not None else "n/a"
                              for k, _ in COST_COLUMNS)] for r in trained])


def _cell(text, limit: int = 160) -> str:
    """One markdown table cell: no line breaks or pipes, long generations cut at `limit` characters."""
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def samples_markdown(runs: list[Run]) -> str:
    """Per split (forget, retain, world fact), each run's greedy answer to the split's first question."""
    out = []
    for _, label in SAMPLE_SPLITS:
        picked = [(r.name, s) for r in runs for s in r.samples if s["split"] == label]
        if not picked:
            continue
        first = picked[0][1]
        out += [f"**{label}**: {_cell(first['question'], 300)} (answer: {_cell(first['answer'], 300)})", "",
                "| run | generation |", "|---|---|"]
        out += [f"| {name} | {_cell(s['generation'])} |" for name, s in picked]
        out.append("")
    return "\n".join(out)


def without_forget_quality(runs: list[Run]) -> list[str]:
    """Labels of runs the plot cannot place (no forget quality: no --reference, or the retain model)."""
    return [r.name for r in runs if r.summary.get("forget_quality") is None
            or r.summary.get("model_utility") is None]


def plot_note(runs: list[Run]) -> str:
    missing = without_forget_quality(runs)
    return (f"Not plotted (no forget quality or model utility; see the table): {', '.join(missing)}."
            if missing else "")


def plot_png(runs: list[Run]) -> bytes:
    """Forget quality (log scale) against model utility, one marker per run named in the legend (labels
    never overlap), runs without forget quality listed under the axes; PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(r.summary["model_utility"], max(r.summary["forget_quality"], 1e-300), r.name) for r in runs
              if r.summary.get("model_utility") is not None and r.summary.get("forget_quality") is not None]
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    markers = "osD^v<>pXh*"
    for i, (mu, fq, name) in enumerate(points):
        ax.scatter([mu], [fq], s=55, marker=markers[i % len(markers)], label=name, zorder=3)
    ax.set_yscale("log")
    ax.margins(x=0.15, y=0.2)
    ax.set_xlabel("model utility")
    ax.set_ylabel("forget quality (KS p-value, log)")
    ax.grid(True, which="both", alpha=0.3)
    if points:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    else:
        ax.text(0.5, 0.5, "no run has both forget_quality and model_utility\n(evaluate with --reference)",
                ha="center", va="center", transform=ax.transAxes)
    note = plot_note(runs)
    if note:
        import textwrap

        fig.text(0.01, 0.01, textwrap.fill(note, 110), fontsize=7, va="bottom", ha="left")
    fig.tight_layout(rect=(0, 0.07 if note else 0, 1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _fmt_setting(key: str, value) -> str:
    if key.endswith("seconds"):
        return f"{value:.1f} s"
    if key.endswith("rss"):
        return f"{value / 2**20:,.0f} MiB"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _run_section(r: Run) -> str:
    """Per-run HTML: settings (method, training, times) and the sample generations."""
    e = html.escape
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(_fmt_setting(k, v))}</td></tr>" for k, v in r.settings.items())
    settings = (f"<table class='kv'>{rows}</table>" if rows
                else "<p>(an eval output: no training settings)</p>")
    samples = "".join(
        f"<tr><td>{e(s['split'])}</td><td>{e(str(s['question']))}</td><td>{e(str(s['answer']))}</td>"
        f"<td>{e(str(s['generation']))}</td></tr>" for s in r.samples)
    gens = ("<table class='gen'><tr><th>split</th><th>question</th><th>answer</th><th>generation</th></tr>"
            f"{samples}</table>") if samples else "<p>(no TOFU_GENERATIONS.jsonl)</p>"
    return (f"<h2>{e(r.name)}</h2><p><code>{e(str(r.path))}</code></p>{settings}"
            f"<h3>sample generations</h3>{gens}")


def render_html(runs: list[Run], png: bytes, title: str = "unlearnkit TOFU report") -> str:
    """One self-contained page: the table, the plot embedded as base64, each run's settings and samples."""
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in COLUMNS)
    body = "".join(
        "<tr><td>" + html.escape(r.name) + "</td>"
        + "".join(f"<td>{html.escape(format_value(k, r.summary.get(k)))}</td>" for k, _ in COLUMNS) + "</tr>"
        for r in runs
    )
    img = base64.b64encode(png).decode("ascii")
    note = plot_note(runs)
    sections = "".join(_run_section(r) for r in runs)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:1em}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}
table.kv th{{text-align:left}}table.gen td{{text-align:left;max-width:28em}}</style>
</head><body><h1>{html.escape(title)}</h1>
<table><tr><th>run</th>{head}</tr>{body}</table>
<p>F.Q.: KS-test p-value of forget truth ratios vs the retain model (higher is better);
M.U.: harmonic mean of the nine retain / real-authors / world-facts metrics.</p>
<img alt="forget quality vs model utility" src="data:image/png;base64,{img}">
<p>{html.escape(note)}</p>
{sections}
</body></html>
"""


def write_report(paths_in: list[str | Path], out: str | Path = "report.md") -> dict[str, Path]:
    """Write out (.md), and beside it the same stem as .html (self-contained) and .png."""
    runs = load_runs(paths_in)
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    png = plot_png(runs)
    kinds = (("markdown", ".md"), ("html", ".html"), ("png", ".png"))
    paths = {kind: out.with_suffix(ext) for kind, ext in kinds}
    md = "# TOFU report\n\n" + markdown_table(runs)
    md += f"\n![forget quality vs model utility]({paths['png'].name})\n"
    if plot_note(runs):
        md += f"\n{plot_note(runs)}\n"
    cost, samples = cost_table(runs), samples_markdown(runs)
    if cost:
        md += "\n## Training cost\n\n" + cost
    if samples:
        md += "\n## Sample generations (greedy, first question of each split)\n\n" + samples
    write_bytes(paths["png"], png)
    write_text(paths["markdown"], md)
    write_text(paths["html"], render_html(runs, png))
    return paths
