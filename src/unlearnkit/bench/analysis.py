"""Reading a finished benchmark: the console line per method, ratios to ULD and the issue's efficiency
targets (figures recorded in bench.json, not pass/fail tests)."""

from __future__ import annotations


def describe(method: str, res: dict) -> str:
    """One line per finished method, for the console."""
    s = res.get("summary") or {}
    fq = s.get("forget_quality")
    return (f"{method}: {res['time_per_epoch']:.2f} s/epoch, {res['tokens_per_s'] or 0:,.0f} tok/s, "
            f"train peak {res['train_peak_rss'] / 2**20:.0f} MiB (+{res['train_rss_increase'] / 2**20:.0f}), "
            f"F.Q. {'n/a' if fq is None else f'{fq:.2e}'}, M.U. {s.get('model_utility', float('nan')):.3f} "
            f"({res['worker_seconds']:.0f} s)")


RATIO_KEYS = ("time_per_epoch", "tokens_per_s", "train_peak_rss", "train_rss_increase", "peak_rss",
              "trainable_params", "artifact_bytes")


def ratios(record: dict, uld_name: str | None) -> dict:
    """Each method's figures divided by ULD's (so ULD = 1; GD's time_per_epoch ratio 3 = 3x slower)."""
    if uld_name is None:
        return {}
    base = record["methods"][uld_name]
    out = {}
    for method, res in record["methods"].items():
        out[method] = {k: (res[k] / base[k] if res.get(k) and base.get(k) else None) for k in RATIO_KEYS}
    dec = (record.get("decode") or {}).get("tokens_per_s", {})
    if "uld" in dec and "target" in dec:
        out["decode_uld_over_target"] = {b: dec["uld"][b] / dec["target"][b] for b in dec["target"]}
    return out


def _resolve_name(record: dict, canonical: str) -> str | None:
    return next((m for m, r in record["methods"].items() if r["method"] == canonical), None)


def check_targets(record: dict, uld_name: str | None) -> list[dict]:
    """The issue's efficiency targets, measured side by side in this run (figures, not tests)."""
    if uld_name is None:
        return []
    uld = record["methods"][uld_name]
    checks = []

    def add(name: str, value: float | None, limit: float, at_most: bool) -> None:
        met = None if value is None else (value <= limit if at_most else value >= limit)
        checks.append({"target": name, "value": value, "limit": limit, "met": met})

    for canonical, limit in (("gd", 1 / 3), ("npo_gd", 1 / 4)):
        other = _resolve_name(record, canonical)
        if other:
            add(f"ULD time/epoch / {canonical} time/epoch <= {limit:.3g}",
                uld["time_per_epoch"] / record["methods"][other]["time_per_epoch"], limit, True)
    other = _resolve_name(record, "npo_gd")
    if other:
        for key in ("train_peak_rss", "train_rss_increase"):
            add(f"ULD {key} / npo_gd {key} <= 0.5", uld[key] / record["methods"][other][key], 0.5, True)
    dec = (record.get("decode") or {}).get("tokens_per_s", {})
    if "uld" in dec and "1" in dec["uld"]:
        add("ULD decode tokens/s / target's at batch 1 >= 0.7", dec["uld"]["1"] / dec["target"]["1"],
            0.7, False)
    return checks
