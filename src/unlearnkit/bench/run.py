"""Orchestration of `unlearn bench`: what to benchmark (BenchConfig), the target world, each method's
RunConfig, and the run of every worker into bench.json / bench.md."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from unlearnkit.bench.analysis import check_targets, describe, ratios
from unlearnkit.bench.measure import machine_info
from unlearnkit.bench.worker import run_worker
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
