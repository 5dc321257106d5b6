"""`unlearn bench`: methods side by side — time per epoch, tokens/s, peak memory, size, TOFU scores, decoding.

Every measurement runs in its own subprocess (`python -m unlearnkit.bench worker SPEC RESULT`) so peak
memories do not mix and each method starts from the same cold state. Definitions (docs/benchmarks.md):

- time/epoch: median wall time of the epochs after the first (the first one warms up allocators,
  tokenises lazily and builds caches); with a single epoch, that epoch.
- training tokens/s: median over the same epochs of (tokens the epoch fed to the trained model / its wall
  time), where tokens = prompt + answer tokens (padding excluded) of every sequence of every item
  (forget, retain and refusal parts). A reference model's forwards on the same tokens are not counted
  again: they are part of what makes a method slower per token.
- peak memory: the worker's peak resident set size (VmHWM of /proc/self/status, per process image;
  `ru_maxrss` elsewhere). `train_peak_rss` is the peak at the end of training (load + train, before
  evaluation); `train_rss_increase` subtracts the RSS after imports, i.e. what model, optimiser,
  reference copy and activations added.
- decoding tokens/s: greedy generation of exactly `decode_tokens` new tokens per prompt (EOS suppressed
  by min_new_tokens, so both models produce the same count), prefill included; median of `rounds`
  rounds, target and ULD measured alternately so shared-machine noise hits both.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from unlearnkit.errors import UnlearnError

DEFAULT_METHODS = ("uld", "kl", "gd", "npo_gd", "npo_kl", "dpo_kl")
BENCH_JSON, BENCH_MD = "bench.json", "bench.md"
Say = Callable[[str], None]


@dataclass
class BenchConfig:
    """What to benchmark. Either `preset` (a world built/reused by `prepare`) or `model` + `data`."""

    out: str
    preset: str | None = "small"
    model: str | None = None  # target: local HF dir or smollm2-135m (overrides the preset's)
    data: str | None = None  # TOFU-layout directory (overrides the preset's)
    reference: str | None = None  # retain model dir or its TOFU_EVAL.json (enables forget quality)
    world: str | None = None  # where to prepare the preset; default runs/worlds/<preset>-<world_seed>
    world_seed: int = 0
    forget: str = "forget10"
    methods: tuple[str, ...] = DEFAULT_METHODS
    epochs: int = 3
    seed: int = 42
    threads: int | None = None  # OMP/torch threads of every worker; None = $OMP_NUM_THREADS or all cores
    max_samples: int | None = None  # train on the first N forget rows
    eval_max_samples: int | None = None  # evaluate the first N rows of each split
    eval_batch_size: int = 16
    eval_max_new_tokens: int = 200
    logging_steps: int = 1  # one loss point per optimiser step, for the loss curves
    decode_tokens: int = 64
    decode_batch_sizes: tuple[int, ...] = (1, 16)
    decode_prompts_b1: int = 4  # prompts timed one at a time; batch b > 1 times b prompts
    decode_rounds: int = 3
    overrides: tuple[str, ...] = ()  # RunConfig overrides: key=value for all, method:key=value for one
    overwrite: bool = False
    device: str | None = None  # decoding and reference evaluation (models.device policy when None)
    dtype: str | None = None
    command: str | None = None  # the command line, recorded in bench.json

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise UnlearnError(f"--epochs must be >= 1, got {self.epochs}")
        if not self.methods:
            raise UnlearnError("--methods is empty: name at least one method, e.g. uld,gd")
        if any(b < 1 for b in self.decode_batch_sizes) or self.decode_tokens < 1:
            raise UnlearnError("decode batch sizes and --decode-tokens must be >= 1")
        from unlearnkit.models.device import Placement

        Placement.resolve(self.device, self.dtype)  # a bad --device/--dtype fails now, not in a worker
        from unlearnkit.config import refuse_output_overrides

        refuse_output_overrides(self.overrides, "bench --set")


# ------------------------------------------------------------------------------------ process memory


def _status_kb(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_bytes() -> int:
    """Peak RSS of this process image. VmHWM first: ru_maxrss survives exec on Linux, so a child forked
    from a big parent would report the parent's peak."""
    kb = _status_kb("VmHWM")
    if kb is not None:
        return kb * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def rss_bytes() -> int:
    """Current RSS (falls back to the peak where /proc is missing)."""
    kb = _status_kb("VmRSS")
    return kb * 1024 if kb is not None else peak_rss_bytes()


def machine_info() -> dict:
    """CPU model, cores, load and library versions: the context every figure needs."""
    from unlearnkit.outputs import provenance

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    prov = provenance(0)
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": affinity,
            "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "platform": platform.platform(), "cuda": prov["machine"]["cuda"], "versions": prov["versions"]}


# ------------------------------------------------------------------------------------------ workers


def epoch_tokens(dataset) -> int:
    """Non-padding tokens of one pass over a paired dataset ({"forget": enc, "retain": enc, ...} items)."""
    total = 0
    for i in range(len(dataset)):
        item = dataset[i]
        parts = item.values() if isinstance(item, dict) and "input_ids" not in item else [item]
        total += sum(len(p["input_ids"]) for p in parts if isinstance(p, dict) and "input_ids" in p)
    return total


def _train_meter():
    from transformers import TrainerCallback

    class TrainMeter(TrainerCallback):
        """Tokens of each epoch (read after the epoch, so its timing is untouched) and the peak RSS at
        the end of training (before evaluation)."""

        def __init__(self):
            self.tokens: list[int] = []
            self.train_peak_rss: int | None = None

        def on_epoch_end(self, args, state, control, train_dataloader=None, **kwargs):
            dataset = getattr(train_dataloader, "dataset", None)
            if dataset is not None:
                self.tokens.append(epoch_tokens(dataset))

        def on_train_end(self, args, state, control, **kwargs):
            self.train_peak_rss = peak_rss_bytes()

    return TrainMeter()


def timed_epochs(epoch_seconds: list[float]) -> list[int]:
    """Indices of the epochs that count: all but the first (warm-up), unless there is only one."""
    return list(range(1, len(epoch_seconds))) if len(epoch_seconds) > 1 else list(range(len(epoch_seconds)))


def _worker_method(spec: dict) -> dict:
    from unlearnkit.config import RunConfig, merge
    from unlearnkit.pipeline import run

    start_rss = rss_bytes()
    cfg = merge(RunConfig(), spec["config"])
    meter = _train_meter()
    record = run(cfg, callbacks=[meter])
    seconds = record["epoch_seconds"]
    timed = timed_epochs(seconds)
    tokens = meter.tokens
    rates = [tokens[i] / seconds[i] for i in timed if i < len(tokens) and seconds[i] > 0]
    train_peak = meter.train_peak_rss or peak_rss_bytes()
    return {
        "method": record["method"], "run_dir": str(cfg.out),
        "epoch_seconds": seconds, "time_per_epoch": statistics.median(seconds[i] for i in timed),
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


def _generate_tokens(model, tok, prompts: list[list[int]], batch_size: int,
                     new_tokens: int) -> tuple[int, float]:
    """(new tokens generated, seconds) for greedy generation of exactly `new_tokens` per prompt."""
    import torch

    from unlearnkit.data.formatting import pad_batch

    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    count, start = 0, time.perf_counter()
    for i in range(0, len(prompts), batch_size):
        feats = [{"input_ids": p, "attention_mask": [1] * len(p)} for p in prompts[i:i + batch_size]]
        batch = {k: v.to(model.device) for k, v in pad_batch(feats, pad_id, "left").items()}
        with torch.inference_mode():
            out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                 max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                 pad_token_id=pad_id, eos_token_id=tok.eos_token_id)
        count += (out.shape[1] - batch["input_ids"].shape[1]) * out.shape[0]
    return count, time.perf_counter() - start


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
        _generate_tokens(m, tok, prompts[:1], 1, 2)
    rates: dict[str, dict[str, list[float]]] = {n: {str(b): [] for b in sizes} for n in models}
    for _ in range(spec["rounds"]):
        for b in sizes:
            chosen = prompts[: spec["prompts_b1"]] if b == 1 else prompts[:b]
            for name, m in models.items():
                n, secs = _generate_tokens(m, tok, chosen, b, spec["new_tokens"])
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


# ------------------------------------------------------------------------------------ orchestration


def _worker_env(threads: int | None) -> dict:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1])  # importable even when not pip-installed
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


@dataclass
class Target:
    """What the bench runs on: target model, data and (optional) retain reference."""

    model: str
    data: str
    reference: str | None
    world: dict = field(default_factory=dict)


def resolve_target(cfg: BenchConfig, say: Say) -> Target:
    """The preset's world (prepared or reused), with --model/--data/--reference taking precedence."""
    world: dict = {}
    model, data, reference = cfg.model, cfg.data, cfg.reference
    if cfg.preset and not (model and data):
        from unlearnkit.prepare import prepare, resolve_preset

        root = Path(cfg.world or default_world(cfg))
        say(f"world: preparing/reusing preset {cfg.preset} (seed {cfg.world_seed}) in {root}")
        splits = tuple(resolve_preset(cfg.preset).forget_splits)  # keep the world's manifest complete
        splits += (cfg.forget,) if cfg.forget not in splits else ()
        manifest = prepare(cfg.preset, root, seed=cfg.world_seed, forget_splits=splits, progress=False)
        world = {"preset": cfg.preset, "seed": cfg.world_seed, "root": str(root.resolve()),
                 "model": manifest["model"], "sizes": manifest["world"]["sizes"]}
        model = model or str(root / "target")
        data = data or str(root / "data")
        if reference is None:
            reference = str(root / manifest["retain_models"][cfg.forget])
    if not model or not data:
        raise UnlearnError("bench needs --preset, or both --model and --data")
    from unlearnkit.hub import is_hub_id

    if not Path(data).is_dir() and not is_hub_id(str(data)):
        raise UnlearnError(f"data directory {data} does not exist: pass a TOFU-layout directory or a hub "
                           "dataset name with --data")
    return Target(model=model, data=data, reference=reference, world=world)


def default_world(cfg: BenchConfig) -> str | None:
    """Where the preset's world is prepared when --world is not given."""
    return f"runs/worlds/{cfg.preset}-{cfg.world_seed}" if cfg.preset else None


def method_config(cfg: BenchConfig, target: Target, method: str, reference_eval: str | None, out: Path):
    """The RunConfig of one method: its own defaults, the bench's epochs/seed, the user's overrides."""
    from unlearnkit.config import RunConfig, apply_overrides, merge
    from unlearnkit.methods import get_method

    get_method(method)  # unknown names fail before any work
    base = {
        "data": {"data": target.data, "forget": cfg.forget, "max_samples": cfg.max_samples},
        "model": {"model": target.model},
        "train": {"epochs": cfg.epochs, "seed": cfg.seed, "logging_steps": cfg.logging_steps},
        "method": {"name": method},
        "eval": {"reference": reference_eval, "enabled": True, "max_samples": cfg.eval_max_samples,
                 "batch_size": cfg.eval_batch_size, "max_new_tokens": cfg.eval_max_new_tokens},
        "out": str(out / "runs" / method), "overwrite": True,
    }
    return apply_overrides(merge(RunConfig(), base), overrides_for(method, cfg.overrides))


def overrides_for(method: str, overrides: tuple[str, ...] | list[str]) -> list[str]:
    """The overrides that apply to `method`: plain `key=value` ones, and `method:key=value` ones for it."""
    from unlearnkit.methods import get_method

    chosen = []
    for text in overrides:
        key = text.partition("=")[0]
        if ":" in key:
            name, _, rest = text.partition(":")
            if get_method(name).name == get_method(method).name:
                chosen.append(rest)
        else:
            chosen.append(text)
    return chosen


def bench(cfg: BenchConfig, say: Say | None = None) -> dict:
    """Run the benchmark into cfg.out: runs/<method>/, reference/, logs/, bench.json, bench.md, plots."""
    from unlearnkit.config import config_to_dict
    from unlearnkit.outputs import check_out_dir, write_json
    from unlearnkit.report.bench import write_bench_report

    say = say or (lambda msg: None)
    out = Path(cfg.out)
    check_out_dir(out, cfg.overwrite, {"--model": cfg.model, "--data": cfg.data, "--reference": cfg.reference,
                                       "--world": cfg.world or default_world(cfg)})
    started = time.time()
    target = resolve_target(cfg, say)
    threads = cfg.threads or int(os.environ.get("OMP_NUM_THREADS") or 0) or os.cpu_count()
    configs = {m: method_config(cfg, target, m, None, out) for m in cfg.methods}  # validates early
    out.mkdir(parents=True, exist_ok=True)
    machine_start = machine_info()

    reference_eval, reference = None, None
    if target.reference:
        ref = Path(target.reference)
        if ref.is_file() or (ref / "TOFU_EVAL.json").is_file():
            reference_eval = str(ref)
        else:
            say(f"reference: evaluating the retain model {ref} once -> {out / 'reference'}")
            spec_cfg = config_to_dict(configs[cfg.methods[0]])
            reference = run_worker("reference", {"kind": "reference", "model": str(ref), "config": spec_cfg,
                                                 "out": str(out / "reference"), "device": cfg.device,
                                                 "dtype": cfg.dtype}, out, threads)
            reference_eval = str(out / "reference" / "TOFU_EVAL.json")
    else:
        say("no retain reference: forget quality is not computed (pass --reference)")

    results: dict[str, dict] = {}
    for i, method in enumerate(cfg.methods, 1):
        run_cfg = method_config(cfg, target, method, reference_eval, out)
        say(f"[{i}/{len(cfg.methods)}] {method}: {cfg.epochs} epochs + eval (own process)")
        res = run_worker(method, {"kind": "method", "config": config_to_dict(run_cfg)}, out, threads)
        results[method] = res
        say("    " + describe(method, res))

    decode = None
    uld_name = next((m for m in cfg.methods if results[m]["method"] == "uld"), None)
    say("decoding: greedy tokens/s of the target" + (" and the ULD model" if uld_name else ""))
    decode = run_worker("decode", {
        "kind": "decode", "model": target.model, "data": target.data, "forget": cfg.forget,
        "artifact": str(out / "runs" / uld_name / "model") if uld_name else None,
        "batch_sizes": list(cfg.decode_batch_sizes), "prompts_b1": cfg.decode_prompts_b1,
        "new_tokens": cfg.decode_tokens, "rounds": cfg.decode_rounds, "device": cfg.device,
        "dtype": cfg.dtype}, out, threads)

    record = {
        "command": cfg.command, "config": asdict(cfg), "threads": threads,
        "machine": machine_start,
        "load_avg_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "wall_seconds": time.time() - started, "target": asdict(target), "reference_eval": reference_eval,
        "reference": reference, "methods": results, "decode": decode,
    }
    record["ratios"] = ratios(record, uld_name)
    record["targets"] = check_targets(record, uld_name)
    write_json(out / BENCH_JSON, record)
    write_bench_report(record, out)
    say(f"wrote {out / BENCH_JSON}, {out / BENCH_MD} and plots in {time.time() - started:.0f} s")
    return record


def describe(method: str, res: dict) -> str:
    """One line per finished method, for the console."""
    s = res.get("summary") or {}
    fq = s.get("forget_quality")
    return (f"{method}: {res['time_per_epoch']:.2f} s/epoch, {res['tokens_per_s'] or 0:,.0f} tok/s, "
            f"train peak {res['train_peak_rss'] / 2**20:.0f} MiB (+{res['train_rss_increase'] / 2**20:.0f}), "
            f"F.Q. {'n/a' if fq is None else f'{fq:.2e}'}, M.U. {s.get('model_utility', float('nan')):.3f} "
            f"({res['worker_seconds']:.0f} s)")


# ---------------------------------------------------------------------------------------- analysis

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


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[0] == "worker":
        worker_main(argv[1], argv[2])
        return
    raise SystemExit("usage: python -m unlearnkit.bench worker SPEC.json RESULT.json "
                     f"(the benchmark itself: unlearn bench ...; got {shlex.join(argv)})")


if __name__ == "__main__":
    main(sys.argv[1:])
