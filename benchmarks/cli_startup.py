"""Wall time of `unlearn --help` and `unlearn CMD --help` (issue 20: <= 1.5 s each), measured in fresh
processes; writes benchmarks/cli_startup.json and prints a table.

    PYTHONPATH=$PWD/src python benchmarks/cli_startup.py [--rounds 5]

The budget is met when every command's median is <= 1.5 s. The help path imports no torch or
transformers (commands import them in their bodies); the JSON also records whether they were loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

BUDGET_SECONDS = 1.5
COMMANDS = ("", "run", "eval", "finetune", "generate", "report", "prepare", "bench", "experts", "mcq", "demo")
HEAVY = ("torch", "transformers", "peft", "datasets")


def time_help(command: str) -> float:
    """Seconds from process start to exit of `unlearn [command] --help`."""
    args = [sys.executable, "-m", "unlearnkit.cli", *([command] if command else []), "--help"]
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def heavy_modules_loaded() -> list[str]:
    """Which heavy libraries `import unlearnkit.cli` pulls in (should be none)."""
    code = ("import sys, unlearnkit.cli; "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return [m for m in out.strip().split(",") if m]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("cli_startup.json"))
    args = parser.parse_args()
    time_help("")  # warm the bytecode cache once
    rows = {}
    for command in COMMANDS:
        times = [time_help(command) for _ in range(args.rounds)]
        rows[command or "(root)"] = {"median_s": round(statistics.median(times), 3),
                                     "max_s": round(max(times), 3)}
        print(f"unlearn {command + ' ' if command else ''}--help  median {statistics.median(times):.2f} s  "
              f"max {max(times):.2f} s")
    worst = max(r["median_s"] for r in rows.values())
    heavy = heavy_modules_loaded()
    record = {
        "budget_s": BUDGET_SECONDS, "within_budget": worst <= BUDGET_SECONDS, "worst_median_s": worst,
        "heavy_modules_on_import": heavy, "rounds": args.rounds, "commands": rows,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_avg": list(os.getloadavg()), "python": platform.python_version()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"worst median {worst:.2f} s (budget {BUDGET_SECONDS} s); heavy modules on import: "
          f"{', '.join(heavy) or 'none'}; wrote {args.out}")


if __name__ == "__main__":
    main()
