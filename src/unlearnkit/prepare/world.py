"""Build the embedded benchmark: world data, tokenizer, base, target and retain models (TOFU recipe).

base    = a tiny model pre-trained on real-world facts (world_facts + real_authors, every phrasing);
target  = base fine-tuned on `full`;  retainXX = base fine-tuned on `retainXX` (the forget-quality
reference). Target and retain models also replay the evaluated fact questions during fine-tuning, so
that tiny models keep their "pre-training" knowledge (the same replay for both, so the comparison
between them is unaffected). Every step is content-hashed (world config + seed + training config +
parent hash) and its hash stored next to its output; a re-run reuses finished steps, and a forced
re-run with the same seed gives the same weights.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from unlearnkit.data.formatting import set_prompt_format
from unlearnkit.data.world import FORGET_PERCENTS, WorldConfig, generate_world, write_world
from unlearnkit.errors import UnlearnError
from unlearnkit.finetune import finetune_settings
from unlearnkit.outputs import write_json
from unlearnkit.prepare.steps import RECIPE_VERSION, Steps, pick_preset, qa_records, step_hash, train_step

AUGMENT_VERSION = 1  # bump when world_augmentation changes (rewrites only the augmentation files)
AUGMENT_STEP_FILE = "augment_step.json"  # in data/: the augmentation step's hash and sizes


@dataclass(frozen=True)
class PreparePreset:
    """A recipe: world size, model, training configs, which retain models to build."""

    name: str
    world: WorldConfig
    model: str = "llama-small"  # a models/presets name, trained from scratch, or `pretrained`
    vocab_size: int = 3000
    base: dict = field(default_factory=finetune_settings)
    target: dict = field(default_factory=finetune_settings)
    forget_splits: tuple[str, ...] = ("forget01", "forget05", "forget10")
    replay_facts: bool = True
    pretrained: str | None = None  # e.g. "smollm2-135m": its weights and tokenizer are the base
    # torch CPU threads while training (None: torch's default). A sub-million-parameter model steps
    # ~3x faster on one thread than on two (llama-micro, batch 24: 0.05 vs 0.15 s/step on a busy
    # 2-core machine): thread sync costs more than the matrix products.
    threads: int | None = None
    prompt_format: str = "chat"  # data.formatting.PROMPT_FORMATS: how target/retain models see QA pairs


PRESETS: dict[str, PreparePreset] = {
    # Tests: 30 authors x 4 QA, so forget01/05/10 = 1/2/3 authors (rule: max(1, round(p * n))).
    # Plumbing only, ~1 CPU-minute: with 12 forget10 rows and a 0.3M-parameter model the target's
    # forget quality against retain90 stays high (0.87 at this recipe; 0.10 even at 60 epochs and
    # forget loss 0.017), so it cannot show unlearning; use `small` for that.
    "micro": PreparePreset(
        name="micro",
        world=WorldConfig(n_authors=30, qa_per_author=4, n_world_facts=16, n_real_authors=8),
        model="llama-micro", vocab_size=1000,
        base=finetune_settings(epochs=30, lr=5e-3, batch_size=24, max_length=64),
        target=finetune_settings(epochs=30, lr=5e-3, batch_size=24, max_length=64),
        threads=1,
    ),
    # The smallest world that shows unlearning: 40 authors x 10 QA, forget10 = 4 authors (40 rows, enough
    # for the KS test to tell models apart). The target must be trained to a memorised forget set: its
    # forget quality against retain90 by target/retain epochs (seed 0, KS steps are coarse at 40 rows):
    # 30 -> 1.3e-03, 40 -> 6.8e-03, 50 -> 1.3e-03, 55 -> 5.0e-04, 60 -> 6.6e-06; 50 authors at 40 epochs
    # 0.11. 55 keeps it <= 1e-3 and the whole prepare in 86 s on an idle 2-core machine (60: 102 s).
    # Only forget10's retain model; one thread per step.
    "mini": PreparePreset(
        name="mini",
        world=WorldConfig(n_authors=40, qa_per_author=10, n_world_facts=16, n_real_authors=8),
        model="llama-micro", vocab_size=1000,
        base=finetune_settings(epochs=30, lr=5e-3, batch_size=24, max_length=64),
        target=finetune_settings(epochs=55, lr=5e-3, batch_size=24, max_length=64),
        forget_splits=("forget10",),
        threads=1,
    ),
    # Demo: 100 authors x 10 QA (1000 rows), 120 world facts, 100 real-author facts, ~3.6M-param Llama.
    "small": PreparePreset(
        name="small",
        world=WorldConfig(n_authors=100, qa_per_author=10, n_world_facts=120, n_real_authors=100),
        model="llama-small", vocab_size=3000,
        # No separate pre-training phase at this scale: a pre-trained base lost plasticity (target loss
        # after 20 epochs on `full` + fact replay: 0.31 from a 1-epoch base, 0.59 from a 5-epoch base,
        # 0.026 from the random init), so target and retain models start from the same seeded random
        # init and learn world/real-author facts by replay alongside their split (same for both).
        base=finetune_settings(epochs=0),
        target=finetune_settings(epochs=20, lr=3e-3, batch_size=16, max_length=96),
        forget_splits=("forget10",),
    ),
    # Documented recipe, not run in tests: SmolLM2-135M-Instruct is the base (it already knows real-world
    # facts, so no pre-training phase); target/retain are full fine-tunes on the world at a small lr.
    "smollm2": PreparePreset(
        name="smollm2",
        world=WorldConfig(n_authors=100, qa_per_author=10),
        model="smollm2-135m", pretrained="smollm2-135m",
        base=finetune_settings(epochs=0),
        target=finetune_settings(epochs=5, lr=1e-4, batch_size=16, max_length=128),
        forget_splits=("forget10",),
    ),
}


def _prepare_augmentation(world, data_dir: Path, steps: Steps) -> dict:
    """ULD's augmentation and the held-out validation rows of every forget split, next to the splits.

    A step of its own (hash: world + AUGMENT_VERSION), so adding it to an existing world only adds
    files: the evaluated splits, the tokenizer and every model keep their hashes and are reused.
    """
    from unlearnkit.data.augment import augment_file_for, validation_file_for
    from unlearnkit.data.jsonl import write_jsonl
    from unlearnkit.data.world import world_augmentation

    files = {f: (augment_file_for(data_dir, f), validation_file_for(data_dir, f)) for f in FORGET_PERCENTS}

    def build() -> dict:
        sizes = {}
        for forget, (aug_path, val_path) in files.items():
            augment, validation = world_augmentation(world, forget)
            write_jsonl(aug_path, augment)
            write_jsonl(val_path, validation)
            sizes[forget] = {"augment": aug_path.name, "validation": val_path.name, "questions": len(augment),
                             "paraphrased_answers": sum(len(r["paraphrased_answers"]) for r in augment),
                             "wrong_answers": sum(len(r["perturbed_answers"]) for r in augment),
                             "validation_rows": len(validation)}
        steps.say(f"augmentation: {', '.join(f'{f}_augment/_validation' for f in files)} -> {data_dir}")
        return {"splits": sizes}

    return steps.run("augmentation", step_hash("augment", world.hash, AUGMENT_VERSION), data_dir, build,
                     key="augment", stamp=AUGMENT_STEP_FILE,
                     outputs=tuple(p.name for ps in files.values() for p in ps))


def _prepare_tokenizer(preset: PreparePreset, world, out: Path, world_hash: str, steps: Steps):
    """Train (or reuse) the world tokenizer; with a pretrained base, use that model's own tokenizer."""
    from unlearnkit.data.world import world_texts
    from unlearnkit.data.world_tokenizer import save_tokenizer, train_tokenizer
    from unlearnkit.models.loading import load_tokenizer

    tok_dir = out / "tokenizer"

    def build() -> dict:
        start = time.perf_counter()
        if preset.pretrained:
            from unlearnkit.models.loading import load_model_and_tokenizer

            _, tok = load_model_and_tokenizer(preset.pretrained)
        else:
            tok = train_tokenizer(world_texts(world), preset.vocab_size)
        save_tokenizer(tok, tok_dir)
        steps.say(f"tokenizer: {len(tok)} tokens -> {tok_dir}")
        return {"vocab_size": len(tok), "wall_time": time.perf_counter() - start}

    h = step_hash("tokenizer", world_hash, preset.vocab_size, preset.pretrained, RECIPE_VERSION)
    info = steps.run("tokenizer", h, tok_dir, build)
    return load_tokenizer(tok_dir), info


def _load(model_dir: Path):
    from unlearnkit.models.loading import load_hf_dir

    return load_hf_dir(model_dir)[0]


def resolve_preset(preset: str | PreparePreset) -> PreparePreset:
    return pick_preset(preset, PRESETS, "")


def prepare(preset: str | PreparePreset, out: str | Path, seed: int = 0,
            forget_splits: tuple[str, ...] | list[str] | None = None,
            force: bool | tuple[str, ...] | list[str] = False, progress: bool = True) -> dict:
    """Generate the world and train base, target and retain models into `out`; return the manifest.

    `force=True` retrains every step, a list of step names ("tokenizer", "base", "target", "retain90",
    ...) retrains only those; otherwise steps whose stored hash matches are reused.
    """
    preset = resolve_preset(preset)
    forget_splits = tuple(forget_splits or preset.forget_splits)
    for f in forget_splits:
        if f not in FORGET_PERCENTS:
            raise UnlearnError(f"unknown forget split {f!r}: choose from {', '.join(FORGET_PERCENTS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if preset.threads:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(preset.threads)
        try:
            return _prepare(preset, out, seed, forget_splits, Steps(force, progress))
        finally:
            torch.set_num_threads(before)
    return _prepare(preset, out, seed, forget_splits, Steps(force, progress))


def _prepare(preset: PreparePreset, out: Path, seed: int, forget_splits: tuple[str, ...],
             steps: Steps) -> dict:
    start = time.perf_counter()
    world = generate_world(preset.world, seed)
    data_dir = out / "data"

    def write_data() -> dict:
        write_world(world, data_dir)
        n_rows, n_authors = len(world.splits["full"]), preset.world.n_authors
        steps.say(f"world: {n_rows} QA rows, {n_authors} authors -> {data_dir}")
        return {}

    steps.run("data", world.hash, data_dir, write_data, outputs=("world.json",))
    augment_info = _prepare_augmentation(world, data_dir, steps)
    tokenizer, tok_info = _prepare_tokenizer(preset, world, out, world.hash, steps)
    fmt = set_prompt_format(tokenizer, preset.prompt_format).describe()

    facts = qa_records(world.splits["world_facts"] + world.splits["real_authors"])
    replay = facts if preset.replay_facts else []
    base_cfg, target_cfg = preset.base | {"seed": seed}, preset.target | {"seed": seed}
    from unlearnkit.models.loading import load_model_and_tokenizer

    # threads change float summation order, so the weights: part of the hash when set (None keeps the
    # hashes of worlds prepared before the field existed)
    threads = () if preset.threads is None else ({"threads": preset.threads},)
    base_hash = step_hash("base", tok_info["hash"], preset.model, preset.pretrained, base_cfg,
                      _model_spec(preset.model), seed, RECIPE_VERSION, *threads,
                      *([fmt] if preset.prompt_format != "chat" else []))  # chat keeps older hashes

    def init_base():
        return load_model_and_tokenizer(preset.pretrained or preset.model, tokenizer=tokenizer, seed=seed)[0]

    models = {"base": train_step(steps, "base", base_hash, out / "base", world.pretrain, base_cfg, tokenizer,
                                 init_base)}
    retain_names = [f"retain{100 - FORGET_PERCENTS[f]}" for f in forget_splits]
    children = [("target", "full")] + [(name, name) for name in retain_names]
    for name, split in children:
        h = step_hash(name, base_hash, split, target_cfg, preset.replay_facts)
        models[name] = train_step(steps, name, h, out / name, qa_records(world.splits[split]) + replay,
                                  target_cfg, tokenizer, lambda: _load(out / "base"))
        models[name]["train_split"] = split

    manifest = {
        "preset": preset.name, "seed": seed, "root": str(out.resolve()),
        "world": {"hash": world.hash, "config": asdict(preset.world), "data_dir": "data",
                  "sizes": {k: len(v) for k, v in world.splits.items()},
                  "pretrain_rows": len(world.pretrain)},
        "tokenizer": {"dir": "tokenizer", **tok_info},
        "augmentation": augment_info,
        "model": preset.model,
        "prompt_format": fmt,
        "models": {name: {"dir": name, **info} for name, info in models.items()},
        "retain_models": {f: f"retain{100 - FORGET_PERCENTS[f]}" for f in forget_splits},
        "wall_time": time.perf_counter() - start,
    }
    write_json(out / "prepare.json", manifest)
    steps.say(f"[green]prepared[/] {preset.name} world in {manifest['wall_time']:.1f}s -> {out}")
    return manifest


def _model_spec(model: str) -> dict:
    """The architecture behind a preset name (part of the base hash, so editing a preset retrains)."""
    from unlearnkit.models.presets import DENSE_PRESETS

    return DENSE_PRESETS.get(model, {"name": model})
