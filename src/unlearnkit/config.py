"""Run configuration: one dataclass per concern, YAML files, dotted command-line overrides.

One mechanism serves YAML, overrides and the CLI's typed options: a nested mapping is merged into a
dataclass instance, field by field, each value checked against the field's annotation by pydantic
(strict: YAML already types its values). The train section holds only the training settings the user
set, each checked against its transformers TrainingArguments field (training.arguments.TrainArgs).
Unknown keys fail with the closest valid key, so a typo never silently falls back to a default.
Free-form dict fields (method.params, train.lora) merge key by key and are left to their consumer.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import hashlib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from unlearnkit.errors import UnlearnError

CONFIG_FILE = "config.yaml"
DEFAULT_SEED = 42  # the one default seed of the commands that train or evaluate (run, eval, finetune, bench)


@dataclass
class DataConfig:
    data: str | None = None  # a TOFU-layout directory (e.g. a prepared world's data/) or a hub dataset ID
    forget: str = "forget10"
    max_length: int = 256
    max_samples: int | None = None
    # Ablations only: let training records carry the evaluated split's paraphrased/perturbed answers
    # (the leak guard of `unlearn run` refuses them otherwise); recorded in run.json.
    allow_eval_overlap: bool = False

    def __post_init__(self) -> None:
        _check_positive("data.max_length", self.max_length)
        _check_positive("data.max_samples", self.max_samples)


@dataclass
class ModelConfig:
    model: str = "smollm2-135m"  # a local HF directory, a preset name, or "smollm2-135m"
    trust_remote_code: bool = False
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    prompt_format: Literal["chat", "plain", "open-unlearning"] = "chat"  # data.formatting.PROMPT_FORMATS
    system_prompt: str | None = None


@dataclass
class MethodConfig:
    name: str = "uld"
    params: dict = field(default_factory=dict)  # method hyper-parameters, validated by the method


@dataclass
class EvalConfig:
    reference: str | None = None  # the retain model's TOFU_EVAL.json, or its run directory
    batch_size: int = 16
    gen_batch_size: int = 64  # greedy generation (ROUGE): larger batches cost less CPU per token
    max_new_tokens: int = 200
    max_samples: int | None = None
    enabled: bool = True
    # Multiple-choice worlds: stop training at the first check (every stop_check_steps optimizer steps)
    # whose forget-domain accuracy is <= this; compares methods at equal forgetting. Off when null.
    stop_at_forget_accuracy: float | None = None
    stop_check_steps: int = 1

    def __post_init__(self) -> None:
        _check_positive("eval.batch_size", self.batch_size)
        _check_positive("eval.gen_batch_size", self.gen_batch_size)
        _check_positive("eval.max_new_tokens", self.max_new_tokens)
        _check_positive("eval.max_samples", self.max_samples)
        _check_positive("eval.stop_check_steps", self.stop_check_steps)
        if self.stop_at_forget_accuracy is not None and not 0 <= self.stop_at_forget_accuracy <= 1:
            raise UnlearnError("eval.stop_at_forget_accuracy is an accuracy: use a value in [0, 1], "
                               f"got {self.stop_at_forget_accuracy}")


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    # The training settings the user set: our short names (lr, epochs, ...) or any TrainingArguments
    # field (training.arguments.TrainArgs); the others keep the method's own defaults.
    train: dict = field(default_factory=lambda: {"seed": DEFAULT_SEED}, metadata={"training_settings": True})
    method: MethodConfig = field(default_factory=MethodConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    out: str = "runs/run"
    overwrite: bool = False
    resume: bool = False  # continue from the newest checkpoint in <out>.checkpoints/

    @property
    def seed(self) -> int:
        """The run's one seed lives in train.seed."""
        return self.train.get("seed", DEFAULT_SEED)


def _check_positive(key: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise UnlearnError(f"{key} must be >= 1, got {value}")


# ---------------------------------------------------------------------------------------------------
# Type checking (pydantic, strict: YAML already gives typed values)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    tp = typing.get_origin(tp) or tp
    return {dict: "mapping", list: "list"}.get(tp, getattr(tp, "__name__", str(tp)))


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


@functools.cache
def _adapter(tp: Any):
    from pydantic import ConfigDict, TypeAdapter

    return TypeAdapter(tp, config=ConfigDict(strict=True, allow_inf_nan=False, arbitrary_types_allowed=True))


def _members(tp: Any) -> tuple:
    return typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)


def check_value(value: Any, tp: Any, key: str) -> Any:
    """`value` as type `tp` (pydantic's strict mode: no bool for a number, no number for a string), or
    an UnlearnError naming the key. Two leniencies: an integral float for an int, and YAML 1.1's
    unquoted `no` (read as false) for a choice that includes "no". A string for an `Enum | str` field
    (TrainingArguments' choices) must be one of the enum's values."""
    from pydantic import ValidationError

    members = _members(tp)
    if isinstance(value, float) and value.is_integer() and int in members and float not in members:
        value = int(value)
    literals = [a for m in members if typing.get_origin(m) is Literal for a in typing.get_args(m)]
    enums = [e.value for m in members if isinstance(m, type) and issubclass(m, enum.Enum) for e in m]
    if value is False and "no" in literals + enums:
        value = "no"
    if enums and isinstance(value, str) and value not in enums:  # TrainingArguments' `Enum | str` fields
        raise UnlearnError(f"config key {key!r} expects one of {', '.join(map(repr, enums))}, "
                           f"got {_show(value)}")
    try:
        return _adapter(tp).validate_python(value)
    except ValidationError as err:
        if any(e["type"] == "finite_number" for e in err.errors()):
            raise UnlearnError(f"config key {key!r} must be a finite number, got {_show(value)}") from None
    # YAML reads unquoted 0123 as the octal int 83, 2024-01-01 as a date: say how to keep it text.
    hint = " (quote the value to keep it as text)" if str in members and value is not None else ""
    raise UnlearnError(f"config key {key!r} expects {_type_name(tp)}, got {_show(value)}{hint}")


# ---------------------------------------------------------------------------------------------------
# Merging mappings into dataclasses


def _is_train(f: dataclasses.Field) -> bool:
    return bool(f.metadata.get("training_settings"))


def _valid_keys(cls: type, prefix: str = "", train: bool = True) -> list[str]:
    """Every dotted key of a dataclass tree: sections and leaves (for suggestions). A train section
    lists our short names, or every TrainingArguments field too with `train`."""
    keys = []
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        keys.append(prefix + f.name)
        if dataclasses.is_dataclass(tp):
            keys += _valid_keys(tp, f"{prefix}{f.name}.", train)
        elif _is_train(f):
            from unlearnkit.training.arguments import ALIASES, setting_names

            keys += [f"{prefix}{f.name}.{k}" for k in (setting_names() if train else ALIASES)]
    return keys


def _unknown_key(key: str, value: Any, root_cls: type) -> UnlearnError:
    while isinstance(value, dict) and len(value) == 1:  # name the whole dotted key the user wrote
        ((sub, value),) = value.items()
        key = f"{key}.{sub}"
    valid = _valid_keys(root_cls)
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if not close:  # 'lr' at the top level -> 'train.lr': match the last component
        last = key.rsplit(".", 1)[-1]
        tails = {k.rsplit(".", 1)[-1]: k for k in reversed(valid)}
        close = [tails[m] for m in difflib.get_close_matches(last, list(tails), n=1, cutoff=0.75)]
    hint = f"did you mean {close[0]!r}?" if close else \
        f"valid keys: {', '.join(_valid_keys(root_cls, train=False))} (train.* also takes any " \
        "transformers.TrainingArguments field)"
    return UnlearnError(f"unknown config key {key!r}: {hint}")


def _deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _merge_train(current: dict, data: Any, key: str, root_cls: type) -> dict:
    """The train section with `data` merged in: each key an alias or a TrainArgs field, typed as that
    field (null = the method's default). A key replaces any earlier one naming the same field."""
    from unlearnkit.training.arguments import ALIASES, canonical, check_ranges, field_names, field_type

    if not isinstance(data, dict):
        raise UnlearnError(f"config key {key!r} is a section: set its fields, e.g. {key}.epochs=...")
    out = dict(current)
    for raw, value in data.items():
        raw = str(raw)
        if "." in raw:  # YAML written as `lora.r: 8` inside the section
            raw, rest = raw.split(".", 1)
            value = nest(rest, value)
        name = ALIASES.get(raw, raw)
        if name not in field_names():
            raise _unknown_key(f"{key}.{raw}", value, root_cls)
        for other in [k for k in out if ALIASES.get(k, k) == name and k != raw]:
            del out[other]
        previous = out.get(raw)
        if isinstance(value, dict) and isinstance(previous, dict):
            out[raw] = _deep_merge(previous, {str(k): v for k, v in value.items()})
        else:
            out[raw] = check_value(value, field_type(name) | None, f"{key}.{raw}")
    check_ranges(*canonical(out, f"{key}."))
    return out


def merge(instance: Any, data: dict, prefix: str = "", root_cls: type | None = None) -> Any:
    """A copy of dataclass `instance` with the values of the nested mapping `data` merged in."""
    cls = type(instance)
    root_cls = root_cls or cls
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    changes = {}
    for raw_key, value in data.items():
        key = str(raw_key)
        if key not in fields and key.split(".", 1)[0] in fields:  # YAML written as `train.lr: 1e-4`
            key, rest = key.split(".", 1)
            value = {rest: value}
        if key not in fields:
            raise _unknown_key(prefix + key, value, root_cls)
        tp, current = hints[key], changes.get(key, getattr(instance, key))
        if dataclasses.is_dataclass(tp):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise UnlearnError(
                    f"config key {prefix + key!r} is a section: set its fields, e.g. "
                    f"{prefix + key}.{dataclasses.fields(tp)[0].name}=..."
                )
            changes[key] = merge(current, value, f"{prefix}{key}.", root_cls)
        elif _is_train(fields[key]):
            changes[key] = _merge_train(current, value, prefix + key, root_cls)
        elif isinstance(value, dict) and isinstance(current, dict):
            changes[key] = _deep_merge(current, {str(k): v for k, v in value.items()})
        else:
            changes[key] = check_value(value, tp, prefix + key)
    return dataclasses.replace(instance, **changes)


# ---------------------------------------------------------------------------------------------------
# YAML and overrides


class _Loader(yaml.SafeLoader):
    """YAML 1.2 floats: PyYAML (YAML 1.1) reads 1e-5, written without a dot, as a string."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _parse_yaml(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader: plain data only
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = f" line {mark.line + 1}" if mark else ""
        raise UnlearnError(f"{where}{line}: invalid YAML ({err.problem or err.context})") from None
    except Exception as err:  # yaml raises ValueError for dates like 2024-13-01, RecursionError, ...
        raise UnlearnError(f"{where}: invalid YAML ({type(err).__name__}: {str(err)[:80]!r})") from None


def parse_override(text: str) -> dict:
    """'train.lora.r=8' -> {'train': {'lora': {'r': 8}}}; the value is read as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UnlearnError(f"override {text!r} is not key=value: write it like train.lr=1e-4")
    parts = key.split(".")
    if any(not p.strip() for p in parts):
        raise UnlearnError(f"override {text!r} has an empty key part: write it like train.lora.r=8")
    return nest(key, _parse_yaml(raw, f"override {key!r} value"))


def nest(key: str, value: Any) -> dict:
    """'train.lora.r', 8 -> {'train': {'lora': {'r': 8}}}."""
    for part in reversed(key.split(".")):
        value = {part.strip(): value}
    return value


def apply_overrides(instance: Any, overrides: list[str] | tuple[str, ...] | str | None) -> Any:
    """A copy of any config dataclass with dotted key=value overrides applied, in order."""
    if isinstance(overrides, str):  # one override passed bare, not in a list
        overrides = [overrides]
    for text in overrides or ():
        instance = merge(instance, parse_override(text))
    return instance


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] | None = (),
                values: dict[str, Any] | None = None) -> RunConfig:
    """Defaults, then the YAML file (if any), then `values` (dotted key -> value, taken as given: the
    CLI's typed options, never read as YAML), then the overrides."""
    cfg = RunConfig()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UnlearnError(f"config file {path} does not exist")
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            line = raw[: err.start].count(b"\n") + 1
            raise UnlearnError(f"config file {path} line {line}: not UTF-8 text (byte {err.start})") from None
        data = _parse_yaml(text, str(path))
        if data is not None and not isinstance(data, dict):
            raise UnlearnError(
                f"config file {path} must be a mapping of sections (data, model, train, method, eval), "
                f"got {type(data).__name__}"
            )
        data = dict(data or {})
        for key in OUTPUT_CONTROLS:  # a file (e.g. a saved config.yaml) never implies --overwrite/--resume
            data.pop(key, None)
        cfg = merge(cfg, data)
    for key, value in (values or {}).items():
        cfg = merge(cfg, nest(key, value))
    return apply_overrides(cfg, overrides)


OUTPUT_CONTROLS = ("overwrite", "resume")


def refuse_output_overrides(overrides, where: str) -> None:
    """Overrides of commands that decide output paths themselves (bench, demo) may not redirect them."""
    for text in overrides or ():
        key = text.partition("=")[0].split(":")[-1].strip()
        if key in ("out", *OUTPUT_CONTROLS):
            raise UnlearnError(f"{where} override {text!r} would change where output goes: {where} writes "
                               "under its --out only; drop the override")


def config_to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def _canonical_yaml(data: dict) -> str:
    return yaml.safe_dump(data, sort_keys=True, default_flow_style=False, allow_unicode=True)


def config_hash(cfg: RunConfig) -> str:
    """12 hex chars of sha256 over the canonical YAML; where the run goes (out, overwrite, resume) is
    left out."""
    data = config_to_dict(cfg)
    for key in ("out", "overwrite", "resume"):
        data.pop(key, None)
    return hashlib.sha256(_canonical_yaml(data).encode()).hexdigest()[:12]


def save_config(cfg: Any, out_dir: str | Path) -> Path:
    """Write the resolved config as out_dir/config.yaml, atomically."""
    from unlearnkit.outputs import write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return write_text(out_dir / CONFIG_FILE,
                      yaml.safe_dump(config_to_dict(cfg), sort_keys=False, allow_unicode=True))
