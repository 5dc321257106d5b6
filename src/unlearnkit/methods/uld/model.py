"""ULDModel: the unlearned model of ULD, z = z_t - w * z_a, as a causal LM that `generate()` can drive.

The forward runs the target and the assistant on the same inputs (same attention mask and positions),
each with its own KV cache, and combines their next-token logits with the relative-top filter of
docs/design.md §4. Anything that calls `model(input_ids, attention_mask).logits` or
`model.generate(...)` works unchanged. The saved artifact holds only the LoRA adapter, a small JSON and
(optionally) the tokenizer.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import DynamicCache, GenerationMixin, PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from unlearnkit.errors import UnlearnError
from unlearnkit.methods.uld.assistant import LoraSettings, build_assistant
from unlearnkit.models.layers import CACHE_KEY, decoder_layers
from unlearnkit.models.loading import load_model_and_tokenizer
from unlearnkit.outputs import replace_dir

ULD_CONFIG_NAME = "uld_config.json"
ULD_FORMAT = "unlearnkit-uld"
# Written where transformers and peft look (config.json model_type, adapter_config.json peft_type) so a
# plain AutoModelForCausalLM / PeftModel load fails naming us instead of silently giving target + LoRA.
NOT_PLAIN = ("unlearnkit-uld: an unlearnkit ULD artifact (target - w * assistant), not a plain model or "
             "LoRA adapter; load it with unlearnkit.methods.uld.load_uld(path), `unlearn generate` or "
             "`unlearn serve`")
DEFAULT_WEIGHT = 0.8
# The official ULD TOFU evaluation uses top_logit_filter=1e-2 (its config default is 0.1).
DEFAULT_FILTER_FACTOR = 1e-2


def check_weight_and_filter(weight: float, filter_factor: float) -> None:
    """w >= 0 (w < 0 would add the assistant's knowledge back) and f in (0, 1]."""
    if not (isinstance(weight, int | float) and math.isfinite(weight) and weight >= 0):
        raise UnlearnError(f"ULD weight w={weight} must be a finite number >= 0 (default {DEFAULT_WEIGHT})")
    if not (isinstance(filter_factor, int | float) and 0 < filter_factor <= 1):
        raise UnlearnError(
            f"ULD filter factor f={filter_factor} must be in (0, 1] (1 disables the filter; "
            f"default {DEFAULT_FILTER_FACTOR})"
        )


def check_overrides(model: str | os.PathLike, weight: float | None, filter_factor: float | None) -> None:
    """--weight/--filter-factor of a command that loads `model`: only a ULD artifact has them, and their
    values must be valid (checked before any loading)."""
    if weight is None and filter_factor is None:
        return
    if not is_uld_artifact(model):
        raise UnlearnError(f"--weight/--filter-factor apply to ULD artifacts only, and {model} is not one")
    check_weight_and_filter(DEFAULT_WEIGHT if weight is None else weight,
                            DEFAULT_FILTER_FACTOR if filter_factor is None else filter_factor)


def relative_top_mask(target_logits: torch.Tensor, filter_factor: float) -> torch.Tensor:
    """True where the target finds a token implausible, so the assistant term is dropped there.

    A token is filtered when log p_t < min(max log p_t + log f, the ceil(f*V)-th largest log p_t):
    the subtraction only re-ranks tokens the target itself considers plausible.
    """
    logp = target_logits.float().log_softmax(dim=-1)
    vocab = logp.shape[-1]
    # round() guards against float noise such as 0.1 * 2000 = 200.00000000000003.
    k = min(vocab, max(1, math.ceil(round(filter_factor * vocab, 6))))
    kth_largest = logp.topk(k, dim=-1).values[..., -1:]
    relative = logp.max(dim=-1, keepdim=True).values + math.log(filter_factor)
    return logp < torch.minimum(relative, kth_largest)


def uld_logits(target_logits: torch.Tensor, assistant_logits: torch.Tensor, weight: float,
               filter_factor: float, center: bool = True) -> torch.Tensor:
    """z = z_t - w * z_a on plausible tokens, z = z_t on filtered ones (bit-exact z_t when w = 0).

    With `center`, z_a is first centred over the vocabulary. Training makes the assistant uniform on
    retain data, which fixes its logits only up to a constant; the filter subtracts that constant from
    the plausible tokens alone, moving probability mass to implausible ones. Centring makes a uniform
    assistant an exact no-op (the official code does not centre: `center=False` reproduces it).
    """
    mask = relative_top_mask(target_logits, filter_factor)
    assistant_logits = assistant_logits.to(target_logits.dtype)
    if center:
        assistant_logits = assistant_logits - assistant_logits.mean(dim=-1, keepdim=True)
    combined = target_logits - weight * assistant_logits
    return torch.where(mask, target_logits, combined)


def target_hash(model: torch.nn.Module) -> str:
    """sha256 over the state_dict (names, dtypes, shapes, raw bytes) in sorted key order."""
    digest = hashlib.sha256()
    state = model.state_dict()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class ULDConfig(PreTrainedConfig):
    """What the unlearned model is beyond its two sub-models: K, w, f and which target it belongs to."""

    model_type = "uld"

    num_layers: int = 1
    weight: float | int = DEFAULT_WEIGHT
    filter_factor: float | int = DEFAULT_FILTER_FACTOR
    center: bool = True  # centre the assistant's logits over the vocabulary (see uld_logits)
    target_path: str | None = None
    target_hash: str | None = None
    vocab_size: int | None = None

    def __post_init__(self, **kwargs):
        check_weight_and_filter(self.weight, self.filter_factor)
        super().__post_init__(**kwargs)


class ULDCache(DynamicCache):
    """The target's KV cache, carrying the assistant's own cache so generate() sees one Cache object.

    generate() reorders / expands / selects the cache it knows about (beam search, contrastive search);
    each of those calls is forwarded to the assistant's cache so both stay aligned.
    """

    def __init__(self, target_config=None, assistant_config=None):
        super().__init__(config=target_config)
        self.assistant_cache = DynamicCache(config=assistant_config)

    def reorder_cache(self, beam_idx: torch.LongTensor):
        super().reorder_cache(beam_idx)
        self.assistant_cache.reorder_cache(beam_idx)

    def crop(self, tokens_to_remove: int) -> None:
        super().crop(tokens_to_remove)
        self.assistant_cache.crop(tokens_to_remove)

    def batch_repeat_interleave(self, repeats: int):
        super().batch_repeat_interleave(repeats)
        self.assistant_cache.batch_repeat_interleave(repeats)

    def batch_select_indices(self, indices: torch.Tensor):
        super().batch_select_indices(indices)
        self.assistant_cache.batch_select_indices(indices)

    def reset(self):
        super().reset()
        self.assistant_cache.reset()


class ULDModel(PreTrainedModel, GenerationMixin):
    """Target + assistant with z = z_t - w * z_a (relative-top filtered); a drop-in causal LM."""

    config_class = ULDConfig
    base_model_prefix = "uld"
    main_input_name = "input_ids"
    _supports_sdpa = True
    _supports_attention_backend = True

    def __init__(self, config: ULDConfig, target: PreTrainedModel, assistant) -> None:
        super().__init__(config)
        # post_init before the sub-models exist: it must not (re)initialise or tie the target's weights.
        self.post_init()
        self.target = target
        self.assistant = assistant
        self.generation_config = copy.deepcopy(target.generation_config)

    # ----------------------------------------------------------------------------------- construction
    @classmethod
    def from_target(cls, target: PreTrainedModel, assistant, weight: float = DEFAULT_WEIGHT,
                    filter_factor: float = DEFAULT_FILTER_FACTOR, target_path: str | None = None) -> ULDModel:
        """Wrap a target and an assistant from `build_assistant(target, ...)` (weights shared)."""
        check_weight_and_filter(weight, filter_factor)
        embed = target.get_input_embeddings().weight
        if assistant.get_input_embeddings().weight.data_ptr() != embed.data_ptr():
            raise UnlearnError("the assistant was not built on this target (weights not shared): "
                               "build it with build_assistant(target)")
        config = ULDConfig(
            num_layers=assistant_num_layers(assistant), weight=float(weight),
            filter_factor=float(filter_factor),
            target_path=target_path if target_path is not None else (target.name_or_path or None),
            vocab_size=target.config.get_text_config(decoder=True).vocab_size,
        )
        return cls(config, target, assistant)

    @property
    def weight(self) -> float:
        return self.config.weight

    @weight.setter
    def weight(self, value: float) -> None:
        check_weight_and_filter(value, self.config.filter_factor)
        self.config.weight = float(value)

    @property
    def filter_factor(self) -> float:
        return self.config.filter_factor

    @filter_factor.setter
    def filter_factor(self, value: float) -> None:
        check_weight_and_filter(self.config.weight, value)
        self.config.filter_factor = float(value)

    @property
    def merged(self) -> bool:
        """True once merge_assistant() has folded the LoRA into the assistant's own layer copies."""
        return not hasattr(self.assistant, "get_base_model")

    def merge_assistant(self) -> ULDModel:
        """For inference: fold the LoRA into private copies of the assistant's K layers' Linear weights.

        Decoding then skips peft's per-Linear LoRA wrappers (batch-1 greedy on `small`: 0.48x -> 0.61x
        the target's speed). Costs K/N of the target's layer weights; embeddings, norm and LM head stay
        shared and the target is untouched. A merged model can no longer be trained or saved.
        """
        if self.merged:
            return self
        from peft.tuners.lora import LoraLayer

        for module in self.assistant.modules():
            if isinstance(module, LoraLayer):  # un-share first: merging writes into the base weight
                base = module.get_base_layer()
                base.weight = torch.nn.Parameter(base.weight.detach().clone(), requires_grad=False)
        self.assistant = self.assistant.merge_and_unload()
        return self

    def get_input_embeddings(self):
        return self.target.get_input_embeddings()

    def get_output_embeddings(self):
        return self.target.get_output_embeddings()

    # ---------------------------------------------------------------------------------------- forward
    def new_cache(self) -> ULDCache:
        """An empty cache pair: the target's layers, plus the assistant's K layers."""
        return ULDCache(self.target.config, assistant_base(self.assistant).config)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: ULDCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        cache: ULDCache | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        cache = cache if cache is not None else past_key_values  # either name, whatever the version
        if cache is not None and not isinstance(cache, ULDCache):
            raise UnlearnError("ULDModel needs a ULDCache (model.new_cache()) as its cache, "
                               f"got {type(cache).__name__}")
        if use_cache and cache is None:
            cache = self.new_cache()
        shared = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                      inputs_embeds=inputs_embeds, use_cache=use_cache, logits_to_keep=logits_to_keep,
                      **kwargs)
        out_t = self.target(**shared, **{CACHE_KEY: cache})
        out_a = self.assistant(**shared, **{CACHE_KEY: cache.assistant_cache if cache is not None else None})
        logits = uld_logits(out_t.logits, out_a.logits, self.config.weight, self.config.filter_factor,
                            self.config.center)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                                   ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits, **{CACHE_KEY: cache if use_cache else None})

    def _prepare_cache_for_generation(self, generation_config, model_kwargs: dict, *args, **kwargs):
        """generate() would build one DynamicCache for one model; we need one cache per sub-model."""
        user_cache = model_kwargs.get(CACHE_KEY)
        if user_cache is not None:
            if not isinstance(user_cache, ULDCache):
                raise UnlearnError("pass a ULDCache (model.new_cache()) as the cache of a ULDModel")
            return
        if generation_config.use_cache is False:
            return
        if generation_config.cache_implementation not in (None, "dynamic"):
            raise UnlearnError(f"ULDModel supports only the dynamic KV cache, not "
                               f"cache_implementation={generation_config.cache_implementation!r}")
        model_kwargs[CACHE_KEY] = self.new_cache()

    # ------------------------------------------------------------------------------------- artifact
    def save_pretrained(self, save_directory: str | os.PathLike, tokenizer=None, **_) -> None:
        """Write LoRA adapter + uld_config.json (+ tokenizer) to a temp dir, then move it into place."""
        if self.merged:
            raise UnlearnError("this ULD model was merged for inference (merge_assistant) and has no "
                               "adapter left to save: save it before merging")
        dest = Path(save_directory)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if self.config.target_hash is None:
            self.config.target_hash = target_hash(self.target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
        try:
            self.assistant.save_pretrained(tmp)
            adapter = json.loads((tmp / "adapter_config.json").read_text())
            adapter.update(peft_type=NOT_PLAIN, base_model_name_or_path=NOT_PLAIN)
            (tmp / "adapter_config.json").write_text(json.dumps(adapter, indent=2) + "\n")
            (tmp / "config.json").write_text(json.dumps(
                {"model_type": NOT_PLAIN, "architectures": ["unlearnkit.ULDModel"]}, indent=2) + "\n")
            meta = {
                "format": ULD_FORMAT, "version": 2,
                "num_layers": self.config.num_layers, "weight": self.config.weight,
                "filter_factor": self.config.filter_factor, "center": self.config.center,
                **target_reference(self.config.target_path, dest),
                "target_hash": self.config.target_hash,
                "target_class": type(self.target).__name__,
                "target_num_layers": len(decoder_layers(self.target)),
            }
            (tmp / ULD_CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
            replace_dir(tmp, dest)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def from_pretrained(cls, artifact_dir: str | os.PathLike, target=None, weight: float | None = None,
                        filter_factor: float | None = None, **_) -> ULDModel:
        """Rebuild from an artifact; `target` is a model or a path (default: the recorded target path)."""
        model, _tok = load_uld(artifact_dir, target, weight, filter_factor)
        return model


def assistant_base(assistant):
    """The K-layer CausalLM inside a peft-wrapped assistant."""
    return assistant.get_base_model() if hasattr(assistant, "get_base_model") else assistant


def assistant_num_layers(assistant) -> int:
    return len(decoder_layers(assistant_base(assistant)))


# ----------------------------------------------------------------------------------------- loading
def target_reference(target: str | None, artifact_dir: Path) -> dict:
    """How an artifact names its target: a local folder by its path relative to the artifact (so the
    pair can move together; the absolute path is kept as a fallback), anything else (hub ID, preset)
    as given."""
    if not target:
        return {"target_path": None}
    path = Path(target).expanduser()
    if not path.is_dir():
        return {"target_path": str(target), "target_path_kind": "name"}
    absolute = path.resolve()
    relative = os.path.relpath(absolute, Path(artifact_dir).expanduser().resolve())
    return {"target_path": Path(relative).as_posix(), "target_path_kind": "relative",
            "target_absolute_path": str(absolute)}


def resolve_target(meta: dict, artifact_dir: Path) -> str | None:
    """The recorded target as a loadable spec: the relative path first, then the absolute fallback."""
    recorded = meta.get("target_path")
    if not recorded or meta.get("target_path_kind") != "relative":
        return recorded  # version 1 (absolute path) or a hub ID / preset name
    relative = (Path(artifact_dir).expanduser().resolve() / recorded).resolve()
    if relative.is_dir():
        return str(relative)
    absolute = meta.get("target_absolute_path")
    if absolute and Path(absolute).is_dir():
        return absolute
    raise UnlearnError(f"the target of ULD artifact {artifact_dir} is not at {relative} (recorded relative "
                       f"to the artifact) nor at {absolute}: move the target with the artifact or pass "
                       "--target")


def is_uld_artifact(path: str | os.PathLike) -> bool:
    """A directory holding our uld_config.json."""
    file = Path(path) / ULD_CONFIG_NAME
    if not file.is_file():
        return False
    try:
        return json.loads(file.read_text()).get("format") == ULD_FORMAT
    except (OSError, json.JSONDecodeError):
        return False


def read_uld_config(artifact_dir: str | os.PathLike) -> dict:
    path = Path(artifact_dir)
    if not is_uld_artifact(path):
        raise UnlearnError(f"{path} is not a ULD artifact (no valid {ULD_CONFIG_NAME}): "
                           "pass a directory written by ULDModel.save_pretrained")
    return json.loads((path / ULD_CONFIG_NAME).read_text())


def _load_target(spec: str, trust_remote_code: bool = False):
    """Load a target model + tokenizer by path/preset name through the project's loader."""
    if is_uld_artifact(spec):
        raise UnlearnError(f"target {spec} is itself a ULD artifact: pass the original target model")
    return load_model_and_tokenizer(spec, trust_remote_code=trust_remote_code)


def _load_artifact_tokenizer(path: Path):
    if not any((path / name).exists() for name in ("tokenizer.json", "tokenizer_config.json")):
        return None
    from transformers import AutoTokenizer

    # config=: our config.json is the decoy for plain loaders (NOT_PLAIN), not a model config
    return AutoTokenizer.from_pretrained(path, local_files_only=True, config=PreTrainedConfig())


def load_uld(artifact, target=None, weight: float | None = None, filter_factor: float | None = None,
             trust_remote_code: bool = False, merge: bool = False):
    """(ULDModel, tokenizer) from an artifact; w and f may be overridden at load time.

    `merge` folds the LoRA into the assistant for faster inference (see ULDModel.merge_assistant).

    The tokenizer is the artifact's if it saved one, else the target's; a target whose weights (hash)
    or tokenizer differ from the training target's is refused.
    """
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    path = Path(artifact)
    meta = read_uld_config(path)
    if not (path / "adapter_model.safetensors").is_file():
        raise UnlearnError(f"artifact {path} has no adapter_model.safetensors (pickle adapters are not "
                           "loaded: they can run code): re-save it with ULDModel.save_pretrained")
    target_tokenizer = None
    if target is None:
        target_path = resolve_target(meta, path)
    else:  # a given target object: keep the recorded one resolvable for a later re-save
        try:
            target_path = resolve_target(meta, path)
        except UnlearnError:
            target_path = None
    if target is None:
        if not target_path:
            raise UnlearnError(
                f"artifact {path} records no target path: pass the original target with --target"
            )
        target = str(target_path)
    if isinstance(target, str | os.PathLike):
        target_path = str(target)
        target, target_tokenizer = _load_target(target_path, trust_remote_code)

    given = target_hash(target)
    if meta.get("target_hash") and given != meta["target_hash"]:
        raise UnlearnError(
            f"artifact {path} was trained on a target with hash {meta['target_hash'][:16]}, but the given "
            f"target has hash {given[:16]}: pass the original target with --target"
        )

    tokenizer = _load_artifact_tokenizer(path)
    if tokenizer is not None and target_tokenizer is not None \
            and tokenizer.get_vocab() != target_tokenizer.get_vocab():
        raise UnlearnError(f"artifact {path} was saved with a different tokenizer than target "
                           f"{target_path}'s: pass the original target with --target")
    tokenizer = tokenizer if tokenizer is not None else target_tokenizer

    adapter = json.loads((path / "adapter_config.json").read_text())
    lora = LoraSettings(r=adapter["r"], alpha=adapter["lora_alpha"], dropout=adapter["lora_dropout"])
    was_training = target.training
    assistant = build_assistant(target, meta["num_layers"], lora)
    state = load_file(path / "adapter_model.safetensors")
    result = set_peft_model_state_dict(assistant, state)
    missing = [k for k in result.missing_keys if "lora_" in k]
    if result.unexpected_keys or missing:
        raise UnlearnError(f"artifact {path}: adapter weights do not fit the target "
                           f"({len(missing)} missing, {len(result.unexpected_keys)} unexpected)")
    target.train(was_training)
    assistant.train(was_training)

    model = ULDModel.from_target(
        target, assistant,
        weight=meta["weight"] if weight is None else weight,
        filter_factor=meta["filter_factor"] if filter_factor is None else filter_factor,
        target_path=target_path,
    )
    model.config.target_hash = given
    model.config.center = meta.get("center", True)
    return (model.merge_assistant() if merge else model), tokenizer


