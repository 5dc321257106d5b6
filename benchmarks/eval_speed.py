"""Time `unlearn eval` (TOFU, full metric set) in a child process: wall time, CPU time, peak RSS and
samples/s per metric pass, appended as one JSON line to --results.

    python benchmarks/eval_speed.py --label new -- --model smollm2-135m --data ../shared/tofu \
        --forget forget01 --threads 2

Everything after `--` is passed to `unlearn eval` (an --out is added when missing). `--pythonpath SRC`
runs another checkout's code (e.g. the previous release's src/) for an old-vs-new comparison on the
same machine and inputs. Peak RSS and CPU time come from wait4() on the child alone, so the benchmark
process itself is not counted; per-pass timings come from the child's eval_meta.json (`passes`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_eval(eval_args: list[str], pythonpath: str | None) -> dict:
    """Run `unlearn eval` with eval_args; return its timings, peak RSS and eval_meta.json."""
    args = list(eval_args)
    tmp = None
    if "--out" not in args:
        tmp = tempfile.mkdtemp(prefix="eval_speed_")
        args += ["--out", str(Path(tmp) / "eval")]
    out = Path(args[args.index("--out") + 1])
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    cmd = [sys.executable, "-m", "unlearnkit.cli", "eval", *args]
    start = time.perf_counter()
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in child.stdout:  # progress lines, echoed so a long run shows it is alive
        lines.append(line)
        print(line, end="", flush=True)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"unlearn eval failed (exit {code}):\n{''.join(lines[-20:])}")
    meta = json.loads((out / "eval_meta.json").read_text())
    return {"wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_gib": round(usage.ru_maxrss / 2**20, 3), "meta": meta}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True, help="Row name, e.g. old / new.")
    parser.add_argument("--pythonpath", help="PYTHONPATH for the child (another checkout's src/).")
    parser.add_argument("--results", default="benchmarks/eval_speed.jsonl", help="JSON lines appended here.")
    parser.add_argument("eval_args", nargs=argparse.REMAINDER, help="-- then `unlearn eval` arguments.")
    ns = parser.parse_args()
    eval_args = ns.eval_args[1:] if ns.eval_args[:1] == ["--"] else ns.eval_args
    res = run_eval(eval_args, ns.pythonpath)
    meta = res.pop("meta")
    passes = {name: {**p, "samples_per_s": round(p["n"] / p["seconds"], 3) if p["seconds"] else None}
              for name, p in (meta.get("passes") or {}).items()}
    load = os.getloadavg()
    row = {"label": ns.label, "command": "unlearn eval " + " ".join(eval_args), **res,
           "eval_seconds": meta.get("seconds"), "n_samples": meta.get("n_samples"), "passes": passes,
           "loadavg_1_5_15": [round(x, 2) for x in load], "cpus": os.cpu_count(),
           "host": platform.node(), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    Path(ns.results).parent.mkdir(parents=True, exist_ok=True)
    with open(ns.results, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps({k: row[k] for k in ("label", "wall_s", "cpu_s", "peak_rss_gib", "n_samples")}))


if __name__ == "__main__":
    main()
