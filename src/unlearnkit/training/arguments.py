"""One settings type for every training loop: transformers' TrainingArguments with our defaults and a few
fields of our own, the way trl builds its method configs.

Any Trainer argument is reachable from YAML and the command line (`train.bf16=true`,
`train.report_to=tensorboard`). The short names our configs have always used are aliases of the
Trainer's own (`train.lr` is `learning_rate`, `train.epochs` is `num_train_epochs`, ...). Settings come
in layers of plain dicts (a method's or finetune's defaults, then the user's), so a value the user did
not set falls back to the layer below; `TrainArgs.from_settings` resolves them.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from transformers import TrainingArguments
from transformers.training_args import OptimizerNames

from unlearnkit.errors import UnlearnError

# Our short names -> TrainingArguments field names (configs, run.json and the CLI use the short ones).
ALIASES: dict[str, str] = {
    "lr": "learning_rate",
    "epochs": "num_train_epochs",
    "batch_size": "per_device_train_batch_size",
    "grad_accum": "gradient_accumulation_steps",
    "warmup_ratio": "warmup_steps",  # transformers 5: a float < 1 is a ratio of the total steps
    "warmup": "warmup_steps",
    "scheduler": "lr_scheduler_type",
    "gradient_checkpointing": "activation_checkpointing",  # transformers 5's name; the old one is deprecated
}
# What run.json's "train" record holds (short names, read by report/ and bench/), plus any other setting
# that differs from TrainArgs' default.
RECORD_KEYS = ("lr", "epochs", "batch_size", "grad_accum", "weight_decay", "warmup_ratio", "seed", "lora",
               "max_steps", "logging_steps", "max_length", "save_every_epoch", "gradient_checkpointing",
               "save_strategy", "save_steps", "allow_no_update")


def cpu_only() -> bool:
    """No GPU/MPS: tell accelerate so, or several launched processes would not form a (gloo) group."""
    return not (torch.cuda.is_available() or torch.backends.mps.is_available())


@dataclass
class TrainArgs(TrainingArguments):
    """TrainingArguments + unlearnkit's own settings; inherited defaults changed where a CPU-first
    unlearning library needs others (no reporters, no tqdm, checkpoints only when asked, paired batches
    kept whole). The defaults of the optimisation itself are open-unlearning's TOFU recipe."""

    # --- ours
    max_length: int = field(default=512, metadata={"help": "Tokens per record (prompt + answer); longer "
                                                           "records are truncated and counted."})
    lora: dict | None = field(default=None, metadata={"help": "peft LoRA settings, e.g. {r: 16, alpha: 32, "
                                                              "dropout: 0.05}; null = full fine-tune."})
    allow_no_update: bool = field(default=False, metadata={"help": "A run that changes no weight is an "
                                                                   "error unless this is true (a baseline)."})
    save_every_epoch: bool = field(default=False, metadata={"help": "Save the (LoRA) model after each epoch "
                                                                    "in out_dir/epoch-N."})
    # --- inherited, other defaults
    output_dir: str | None = None
    learning_rate: float = 1e-5
    num_train_epochs: float = 10.0
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 4
    weight_decay: float = 0.01
    warmup_steps: float = 0.1
    max_steps: int = -1  # <= 0: train num_train_epochs
    seed: int = 0
    data_seed: int | None = None  # None: the seed
    logging_steps: float = 5
    # Trainer checkpoints, for --resume (unlearnkit resumes from epoch or step checkpoints only)
    save_strategy: Literal["no", "epoch", "steps"] = "no"
    save_total_limit: int | None = 2  # the newest may be incomplete after a kill: keep the one before it
    optim: OptimizerNames | str = "adamw_torch"
    report_to: None | str | list[str] = "none"
    disable_tqdm: bool | None = True
    remove_unused_columns: bool = False  # items are {"forget": ..., "retain": ...}, not model kwargs
    label_names: list[str] | None = field(default_factory=list)
    dataloader_num_workers: int = 0
    dataloader_pin_memory: bool = field(default_factory=torch.cuda.is_available)
    use_cpu: bool = field(default_factory=cpu_only)
    # under several processes each step's batch is split across them: same global batch, order, steps
    accelerator_config: dict | str | None = field(default_factory=lambda: {"split_batches": True})

    def __post_init__(self) -> None:
        if self.data_seed is None:
            self.data_seed = self.seed
        if self.max_steps <= 0:  # the Trainer trains 0 steps at max_steps=0; ours means "use the epochs"
            self.max_steps = -1
        check_ranges({f: getattr(self, f) for f in (*_RANGES, "max_steps")},
                     {f: SHORT.get(f, f) for f in _RANGES})
        try:
            super().__post_init__()
        except (ValueError, TypeError) as err:  # the Trainer's own checks (e.g. an unknown scheduler)
            raise UnlearnError(f"training settings: {str(err).strip().splitlines()[0]}") from None

    @classmethod
    def from_settings(cls, *layers: dict | None, **fixed: Any) -> TrainArgs:
        """TrainArgs from layers of settings (short names or field names; later layers win, None means
        "not set here"), then `fixed` (e.g. output_dir). Unknown keys and out-of-range values are
        UnlearnErrors naming the key as written."""
        values: dict[str, Any] = {}
        for layer in layers:
            check_ranges(*canonical(layer or {}))
            for key, value in (layer or {}).items():
                if value is not None:
                    values[canonical_key(key)] = value
        return cls(**{**values, **fixed})

    def record(self) -> dict:
        """The settings by our short names (run.json's "train"), plus every other field not at its default."""
        short = {key: _plain(getattr(self, ALIASES.get(key, key))) for key in RECORD_KEYS}
        covered = {ALIASES.get(k, k) for k in RECORD_KEYS} | {"output_dir", "gradient_checkpointing"}
        default = _default_args()
        extra = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)
                 if f.init and f.name not in covered and getattr(self, f.name) != getattr(default, f.name)
                 and not (f.name == "data_seed" and self.data_seed == self.seed)}
        return short | extra


SHORT: dict[str, str] = {field_name: short for short, field_name in ALIASES.items()}  # warmup_steps: warmup


@functools.cache
def _default_args() -> TrainArgs:
    return TrainArgs()


def _plain(value: Any) -> Any:
    """A JSON/YAML-safe view of a field value (enums by value, config objects as dicts)."""
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@functools.cache
def field_names() -> tuple[str, ...]:
    """Every settable field of TrainArgs (aliases are separate)."""
    return tuple(f.name for f in dataclasses.fields(TrainArgs) if f.init)


def setting_names() -> list[str]:
    """Every key the train section accepts: our short names first, then the fields."""
    return [*ALIASES, *field_names()]


def canonical_key(key: str) -> str:
    """The TrainArgs field a key of the train section names (an alias or the field itself)."""
    name = ALIASES.get(key, key)
    if name not in field_names():
        close = difflib.get_close_matches(key, setting_names(), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else "see transformers.TrainingArguments"
        raise UnlearnError(f"unknown training setting {key!r}: {hint}")
    return name


def canonical(settings: dict, prefix: str = "") -> tuple[dict, dict]:
    """(values by field name, how each field was spelled) of a settings dict; None values are left out."""
    values, names = {}, {}
    for key, value in settings.items():
        if value is not None:
            name = canonical_key(key)
            values[name], names[name] = value, prefix + key
    return values, names


@functools.cache
def field_type(name: str) -> Any:
    """The annotation of a TrainArgs field, resolved (ours, or transformers' for inherited ones)."""
    return typing.get_type_hints(TrainArgs)[name]


# Range checks the Trainer does not make (or makes with a traceback-style message), by field.
_AT_LEAST_ONE = ("per_device_train_batch_size", "gradient_accumulation_steps", "logging_steps", "save_steps",
                 "max_length")
_RANGES = (*_AT_LEAST_ONE, "learning_rate", "num_train_epochs", "warmup_steps")


def check_ranges(values: dict[str, Any], names: dict[str, str]) -> None:
    """UnlearnError for the first out-of-range value; `values` by field name, `names` as the user wrote
    them (train.lr, warmup_ratio, ...). Written once: config loading and TrainArgs both call it."""
    for name in _AT_LEAST_ONE:
        if name in values and isinstance(values[name], int | float) and values[name] < 1:
            raise UnlearnError(f"{names[name]} must be >= 1, got {values[name]}")
    lr = values.get("learning_rate")
    if isinstance(lr, int | float) and not lr > 0:
        raise UnlearnError(f"{names['learning_rate']} must be > 0, got {lr}")
    epochs, steps = values.get("num_train_epochs"), values.get("max_steps")
    if isinstance(epochs, int | float) and not epochs > 0 and not (steps or 0) > 0:
        raise UnlearnError(f"{names['num_train_epochs']} must be > 0 (or set train.max_steps), got {epochs}")
    warmup = values.get("warmup_steps")
    if isinstance(warmup, int | float):
        if names.get("warmup_steps", "").endswith("warmup_ratio") and not 0 <= warmup < 1:
            raise UnlearnError(f"{names['warmup_steps']} must be in [0, 1), got {warmup}")
        if warmup < 0:
            raise UnlearnError(f"{names['warmup_steps']} must be >= 0 (a ratio < 1 or a number of steps), "
                               f"got {warmup}")
