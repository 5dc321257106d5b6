"""One settings type for every training loop: transformers' TrainingArguments with our defaults and a few
fields of our own, the way trl builds its method configs.

Any Trainer argument is reachable from YAML and the command line (`train.bf16=true`,
`train.report_to=tensorboard`). The short names our configs have always used are aliases of the
Trainer's own (`train.lr` is `learning_rate`, `train.epochs` is `num_train_epochs`, ...).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments

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
}


def _cpu_only() -> bool:
    """No GPU/MPS: tell accelerate so, or several launched processes would not form a (gloo) group."""
    return not (torch.cuda.is_available() or torch.backends.mps.is_available())


@dataclass
class TrainArgs(TrainingArguments):
    """TrainingArguments + unlearnkit's own settings; inherited defaults changed where a CPU-first
    unlearning library needs others (no reporters, no tqdm, checkpoints only when asked, paired batches
    kept whole)."""

    # --- ours
    max_length: int = field(default=512, metadata={"help": "Tokens per record (prompt + answer); longer "
                                                           "records are truncated and counted."})
    lora: dict | None = field(default=None, metadata={"help": "peft LoraConfig kwargs, e.g. {r: 16, "
                                                              "alpha: 32, dropout: 0.05}; null = full fine-tune."})
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
    seed: int = 0
    data_seed: int | None = None  # None: the seed
    logging_steps: float = 5
    save_strategy: str = "no"
    save_total_limit: int | None = 2  # the newest may be incomplete after a kill: keep the one before it
    optim: str = "adamw_torch"
    report_to: None | str | list[str] = "none"
    disable_tqdm: bool | None = True
    remove_unused_columns: bool = False  # items are {"forget": ..., "retain": ...}, not model kwargs
    label_names: list[str] | None = field(default_factory=list)
    dataloader_num_workers: int = 0
    dataloader_pin_memory: bool = field(default_factory=torch.cuda.is_available)
    use_cpu: bool = field(default_factory=_cpu_only)
    # under several processes each step's batch is split across them: same global batch, order, steps
    accelerator_config: dict | str | None = field(default_factory=lambda: {"split_batches": True})

    def __post_init__(self) -> None:
        if self.data_seed is None:
            self.data_seed = self.seed
        super().__post_init__()


def field_names() -> set[str]:
    """Every settable key of the train section (TrainArgs fields; aliases are separate)."""
    return {f.name for f in dataclasses.fields(TrainArgs) if f.init}


def canonical_key(key: str) -> str:
    """The TrainArgs field a key of the train section names (an alias or the field itself)."""
    name = ALIASES.get(key, key)
    if name not in field_names():
        import difflib

        close = difflib.get_close_matches(key, [*ALIASES, *field_names()], n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else "see transformers.TrainingArguments"
        raise UnlearnError(f"unknown training setting {key!r}: {hint}")
    return name
