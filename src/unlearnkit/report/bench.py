"""The benchmark's outputs from bench.json: a markdown table with ratios to ULD, and three plots.

Plots: forget quality (log) vs time per epoch relative to ULD (the ULD paper's efficiency figure),
forget quality vs model utility, and forget/retain loss curves per method.
"""

from __future__ import annotations

import math
from pathlib import Path

from unlearnkit.outputs import save_figure, write_text

PLOTS = {"efficiency": "bench_efficiency.png", "fq_mu": "bench_fq_mu.png", "losses": "bench_losses.png"}
MIB = 2**20


def _num(value, fmt: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, fmt)


def _ratio(value) -> str:
    return "n/a" if value is None else f"{value:.2f}×"


def method_table(record: dict) -> str:
    """One row per method: cost figures, their ratio to ULD, and the TOFU scores of the result."""
    ratios = record.get("ratios", {})
    head = ("| method | time/epoch (s) | ×ULD | train tokens/s | train peak RSS (MiB) | ×ULD | "
            "RSS added by training (MiB) | ×ULD | trainable / total params | artifact (MB) | "
            "F.Q. | M.U. | forget ROUGE-L | retain ROUGE-L |")
    sep = "|---|" + "---:|" * 13
    rows = []
    for name, r in record["methods"].items():
        s, q = r.get("summary") or {}, ratios.get(name, {})
        label = name if r["method"] == name else f"{name} ({r['method']})"
        rows.append(
            f"| {label} | {_num(r['time_per_epoch'], '.3f')} | {_ratio(q.get('time_per_epoch'))} | "
            f"{_num(r.get('tokens_per_s'), ',.0f')} | {_num(r['train_peak_rss'] / MIB, '.0f')} | "
            f"{_ratio(q.get('train_peak_rss'))} | {_num(r['train_rss_increase'] / MIB, '.1f')} | "
            f"{_ratio(q.get('train_rss_increase'))} | {r['trainable_params']:,} / {r['total_params']:,} | "
            f"{_num(r['artifact_bytes'] / 1e6, '.2f')} | {_num(s.get('forget_quality'), '.2e')} | "
            f"{_num(s.get('model_utility'), '.3f')} | {_num(s.get('forget_Q_A_ROUGE'), '.3f')} | "
            f"{_num(s.get('retain_Q_A_ROUGE'), '.3f')} |")
    return "\n".join([head, sep, *rows]) + "\n"


def decode_table(record: dict) -> str:
    dec = record.get("decode") or {}
    tps = dec.get("tokens_per_s") or {}
    if not tps:
        return ""
    sizes = list(tps["target"])
    head = "| model | " + " | ".join(f"batch {b} (tokens/s)" for b in sizes) + " |"
    rows = [f"| {name} | " + " | ".join(_num(by_b[b], ",.1f") for b in sizes) + " |"
            for name, by_b in tps.items()]
    if "uld" in tps:
        ratios = " | ".join(f"{tps['uld'][b] / tps['target'][b]:.2f}×" for b in sizes)
        rows.append(f"| ULD / target | {ratios} |")
    return "\n".join([head, "|---|" + "---:|" * len(sizes), *rows]) + "\n"


def targets_table(record: dict) -> str:
    checks = record.get("targets") or []
    if not checks:
        return ""
    rows = [f"| {c['target']} | {_num(c['value'], '.3f')} | "
            f"{'yes' if c['met'] else 'no' if c['met'] is not None else 'n/a'} |" for c in checks]
    return "\n".join(["| target | measured | met |", "|---|---:|:---:|", *rows]) + "\n"


def markdown(record: dict) -> str:
    """bench.md: context, the method table, decoding, and the efficiency targets."""
    m = record["machine"]
    cfg = record["config"]
    dec = record.get("decode") or {}
    lines = [
        "# unlearnkit benchmark", "",
        f"Command: `{record.get('command') or 'unlearn bench'}`", "",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m.get('usable_cores')} usable), {record['threads']} "
        f"thread(s) per worker; load average at start {_loads(m.get('load_avg'))}, at end "
        f"{_loads(record.get('load_avg_end'))}. torch {m['versions']['torch']}, transformers "
        f"{m['versions']['transformers']}, peft {m['versions']['peft']}.", "",
        f"Target `{record['target']['model']}`, data `{record['target']['data']}`, forget `{cfg['forget']}`, "
        f"{cfg['epochs']} epochs per method (each method's own default lr/batch), seed {cfg['seed']}; "
        f"wall time {record['wall_seconds'] / 60:.1f} min.", "",
        "## Training cost and TOFU scores", "",
        "×ULD = the method's figure divided by ULD's, measured side by side in this run. time/epoch = median "
        "of the epochs after the first; tokens/s = prompt+answer tokens (no padding) fed per second; "
        "train peak RSS = peak resident memory of the method's own process at the end of training; "
        "RSS added = that peak minus the RSS after imports.", "",
        method_table(record),
    ]
    if dec:
        lines += ["## Greedy decoding", "",
                  f"{dec['new_tokens']} new tokens per prompt (EOS suppressed), prefill included, median of "
                  f"{cfg['decode_rounds']} alternating rounds.", "", decode_table(record)]
    if record.get("targets"):
        lines += ["## Efficiency targets", "", targets_table(record)]
    lines += ["## Plots", "", *(f"![{k}]({v})" for k, v in PLOTS.items()), ""]
    return "\n".join(lines)


def _loads(values) -> str:
    return "n/a" if not values else "/".join(f"{v:.1f}" for v in values)


# -------------------------------------------------------------------------------------------- plots


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    save_figure(fig, path)
    _plt().close(fig)
    return path


def _scatter(ax, points: list[tuple[float, float, str]], empty: str) -> None:
    for x, y, name in points:
        ax.scatter([x], [y], s=45, marker="*" if name.startswith("uld") else "o")
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    if not points:
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes)


def plot_efficiency(record: dict, path: Path) -> Path:
    """Forget quality (log) vs time per epoch relative to ULD: up and left is better."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    ratios = record.get("ratios", {})
    points = []
    for name, r in record["methods"].items():
        fq = (r.get("summary") or {}).get("forget_quality")
        rel = ratios.get(name, {}).get("time_per_epoch") or r["time_per_epoch"]
        if fq is not None:
            points.append((rel, max(fq, 1e-300), name))
    _scatter(ax, points, "no forget quality (run with a retain reference)")
    ax.set_yscale("log")
    ax.set_xlabel("time per epoch relative to ULD" if ratios else "time per epoch (s)")
    ax.set_ylabel("forget quality (log)")
    ax.set_title("forget quality vs training cost")
    return _save(fig, path)


def plot_fq_mu(record: dict, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    points = []
    for name, r in record["methods"].items():
        s = r.get("summary") or {}
        if s.get("forget_quality") is not None and s.get("model_utility") is not None:
            points.append((s["model_utility"], max(s["forget_quality"], 1e-300), name))
    ref = (record.get("reference") or {}).get("summary") or {}
    if ref.get("model_utility") is not None:
        ax.axvline(ref["model_utility"], ls="--", c="gray", lw=1, label="retain model M.U.")
        ax.legend(fontsize=8)
    _scatter(ax, points, "no forget quality (run with a retain reference)")
    ax.set_yscale("log")
    ax.set_xlabel("model utility")
    ax.set_ylabel("forget quality (log)")
    return _save(fig, path)


def plot_losses(record: dict, path: Path) -> Path:
    """forget_loss and retain_loss per logged step, one line per method (each method's own loss terms:
    GA/GD's forget term is -CE, NPO's its NPO loss, ULD's the assistant's CE)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    for ax, key in zip(axes, ("forget_loss", "retain_loss"), strict=True):
        for name, r in record["methods"].items():
            pts = [(h.get("epoch", h.get("step")), h[key]) for h in r.get("log_history", []) if key in h]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker=".", label=name)
        ax.set_xlabel("epoch")
        ax.set_title(key.replace("_", " "))
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    return _save(fig, path)


def write_bench_report(record: dict, out: str | Path) -> dict[str, Path]:
    """bench.md and the three plots into `out` (each written atomically)."""
    out = Path(out)
    paths = {"md": out / "bench.md"}
    write_text(paths["md"], markdown(record))
    paths["efficiency"] = plot_efficiency(record, out / PLOTS["efficiency"])
    paths["fq_mu"] = plot_fq_mu(record, out / PLOTS["fq_mu"])
    paths["losses"] = plot_losses(record, out / PLOTS["losses"])
    return paths
