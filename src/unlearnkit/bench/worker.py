"""The worker protocol: every measurement runs in its own subprocess
(`python -m unlearnkit.bench worker SPEC RESULT`) so peak memories do not mix and each method starts from
the same cold state. The parent writes SPEC (a JSON job: method, reference or decode), the worker writes
RESULT atomically; its console output goes to logs/<name>.log.
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from unlearnkit.bench.measure import generate_tokens, train_meter
from unlearnkit.costs import peak_rss_bytes, rss_bytes, time_per_epoch, timed_epochs
from unlearnkit.errors import UnlearnError


def _worker_method(spec: dict) -> dict:
    from unlearnkit.config import RunConfig, merge
    from unlearnkit.pipeline import run

    start_rss = rss_bytes()
    cfg = merge(RunConfig(), spec["config"])
    meter = train_meter()
    record = run(cfg, callbacks=[meter])
    seconds = record["epoch_seconds"]
    timed = timed_epochs(seconds)
    tokens = meter.tokens
    rates = [tokens[i] / seconds[i] for i in timed if i < len(tokens) and seconds[i] > 0]
    train_peak = record["train_peak_rss"]  # pipeline.run's: the end of training, before evaluation
    return {
        "method": record["method"], "run_dir": str(cfg.out),
        "epoch_seconds": seconds, "time_per_epoch": time_per_epoch(seconds),
        "tokens_per_epoch": tokens, "tokens_per_s": statistics.median(rates) if rates else None,
        "train_seconds": record["train_seconds"], "global_steps": record["global_steps"],
        "trainable_params": record["trainable_params"], "total_params": record["total_params"],
        "artifact_bytes": record["artifact_bytes"],
        "start_rss": start_rss, "train_peak_rss": train_peak, "train_rss_increase": train_peak - start_rss,
        "peak_rss": peak_rss_bytes(),
        "summary": record.get("summary"), "best_epoch": (record.get("epoch_choice") or {}).get("epoch"),
        "log_history": [h for h in record["log_history"] if "loss" in h or "forget_loss" in h],
        "params": record["params"], "train": record["train"],
    }


def _worker_reference(spec: dict) -> dict:
    """Evaluate the retain model once; every method run then reads its TOFU_EVAL.json."""
    from unlearnkit.config import RunConfig, merge
    from unlearnkit.models.device import Placement
    from unlearnkit.models.loading import load_model_and_tokenizer
    from unlearnkit.pipeline import evaluate

    cfg = merge(RunConfig(), spec["config"])
    model, tok = load_model_and_tokenizer(spec["model"], cfg.model.trust_remote_code, cfg.model.dtype)
    model = Placement.resolve(spec.get("device"), spec.get("dtype")).apply(model).eval()
    start = time.perf_counter()
    summary = evaluate(model, tok, cfg, Path(spec["out"]), f"retain ({Path(spec['model']).name})", None)
    return {"summary": summary, "seconds": time.perf_counter() - start, "peak_rss": peak_rss_bytes()}


def _worker_decode(spec: dict) -> dict:
    """Greedy tokens/s of the target and of the ULD model (same target object, same prompts)."""
    from unlearnkit.data.formatting import prompt_ids
    from unlearnkit.data.tofu import load_split
    from unlearnkit.models.device import Placement
    from unlearnkit.models.loading import load_model_and_tokenizer

    placement = Placement.resolve(spec.get("device"), spec.get("dtype"))
    target, tok = load_model_and_tokenizer(spec["model"], dtype=placement.loader_dtype)
    target = placement.apply(target)
    models = {"target": target}
    if spec.get("artifact"):
        from unlearnkit.methods.uld import load_uld

        models["uld"] = placement.apply(load_uld(spec["artifact"], target=target, merge=True)[0])
    for m in models.values():
        m.eval()
    sizes = spec["batch_sizes"]
    need = max([spec["prompts_b1"], *sizes])
    rows = load_split(spec["data"], spec["forget"])
    questions = [rows[i % len(rows)]["question"] for i in range(need)]
    prompts = [prompt_ids(tok, q) for q in questions]
    for m in models.values():  # warm-up: first-call allocations and lazy inits
        generate_tokens(m, tok, prompts[:1], 1, 2)
    rates: dict[str, dict[str, list[float]]] = {n: {str(b): [] for b in sizes} for n in models}
    for _ in range(spec["rounds"]):
        for b in sizes:
            chosen = prompts[: spec["prompts_b1"]] if b == 1 else prompts[:b]
            for name, m in models.items():
                n, secs = generate_tokens(m, tok, chosen, b, spec["new_tokens"])
                rates[name][str(b)].append(n / secs)
    result = {name: {b: statistics.median(v) for b, v in by_b.items()} for name, by_b in rates.items()}
    return {"tokens_per_s": result, "rounds": rates, "new_tokens": spec["new_tokens"],
            "prompt_tokens": [len(p) for p in prompts], "peak_rss": peak_rss_bytes(), **placement.record()}


WORKERS = {"method": _worker_method, "reference": _worker_reference, "decode": _worker_decode}


def worker_main(spec_path: str, result_path: str) -> None:
    """Entry point of one subprocess: run the spec, write the result JSON atomically."""
    from unlearnkit.outputs import write_json

    spec = json.loads(Path(spec_path).read_text())
    if spec.get("threads"):
        import torch

        torch.set_num_threads(int(spec["threads"]))
    result = WORKERS[spec["kind"]](spec)
    result["worker_threads"] = __import__("torch").get_num_threads()
    write_json(Path(result_path), result)


def _worker_env(threads: int | None) -> dict:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])  # importable even when not pip-installed
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
    env["TOKENIZERS_PARALLELISM"] = "false"
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


def run_worker(name: str, spec: dict, out: Path, threads: int | None) -> dict:
    """Run one worker subprocess; its output goes to out/logs/<name>.log, its result is returned."""
    work = out / "logs"
    work.mkdir(parents=True, exist_ok=True)
    spec_path, result_path = work / f"{name}.spec.json", work / f"{name}.result.json"
    log_path = work / f"{name}.log"
    from unlearnkit.outputs import write_json

    write_json(spec_path, {**spec, "threads": threads})
    result_path.unlink(missing_ok=True)
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        cmd = [sys.executable, "-m", "unlearnkit.bench", "worker", str(spec_path), str(result_path)]
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=_worker_env(threads),
                              check=False)
    if proc.returncode != 0 or not result_path.is_file():
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        raise UnlearnError(f"bench worker {name!r} failed (exit {proc.returncode}); see {log_path}: "
                           + " | ".join(tail))
    result = json.loads(result_path.read_text())
    result["worker_seconds"] = time.perf_counter() - start
    return result


def main(argv: list[str]) -> None:
    """`python -m unlearnkit.bench worker SPEC.json RESULT.json` (bench/__main__.py)."""
    if len(argv) == 3 and argv[0] == "worker":
        worker_main(argv[1], argv[2])
        return
    raise SystemExit("usage: python -m unlearnkit.bench worker SPEC.json RESULT.json "
                     f"(the benchmark itself: unlearn bench ...; got {shlex.join(argv)})")
