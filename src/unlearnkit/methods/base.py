"""UnlearnTrainer: a transformers Trainer over paired forget/retain batches, plus shared loss helpers.

Batches come from a standard Dataset + collator ({"forget": batch, "retain": batch, ...}), so the
Trainer's own dataloader, accelerate and DeepSpeed work unchanged. A method subclass only defines its
forget loss (and, for a few, its retain loss); the total is `gamma * forget + alpha * retain` as in
open-unlearning. Methods that need the frozen original model get it once: with LoRA as the base model
with adapters disabled (no copy), otherwise a deepcopy made before training.
"""

from __future__ import annotations

import copy
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import Trainer

from unlearnkit.data.formatting import IGNORE_INDEX, TruncationCounter
from unlearnkit.data.unlearning import ForgetRetainDataset, PairedCollator, load_refusals
from unlearnkit.errors import UnlearnError
from unlearnkit.methods.params import MethodParams, param
from unlearnkit.training.arguments import TrainArgs
from unlearnkit.training.callbacks import DatasetEpoch

RETAIN_LOSSES = ("none", "nll", "kl")
# open-unlearning TOFU recipe: lr 1e-5, 10 epochs, 8 x 4 accumulation, wd 0.01, 1 warmup epoch of 10;
# a method's default training settings unless its Method(train=...) says otherwise.
TOFU_TRAIN = {"lr": 1e-5, "epochs": 10, "batch_size": 8, "grad_accum": 4, "weight_decay": 0.01,
              "warmup_ratio": 0.1}


# ---------------------------------------------------------------- loss helpers (float32, padding-safe)

def forward_logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Next-token logits of a batch (labels are not passed, so the model computes no loss of its own)."""
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p of each label token, answer mask), both (B, T-1); float32, 0 where the mask is off."""
    logits, labels = logits[:, :-1].float(), labels[:, 1:]
    mask = labels != IGNORE_INDEX
    logp = torch.log_softmax(logits, dim=-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return logp * mask, mask


def sequence_logprob_from_logits(logits: torch.Tensor,
                                 labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of answer-token log-probs, number of answer tokens) per sample: log π(y|x) and |y|."""
    logp, mask = token_logprobs(logits, labels)
    return logp.sum(-1), mask.sum(-1)


def sequence_logprob(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """log π(y|x) (sum over answer tokens, EOS included) and |y| per sample, in float32."""
    return sequence_logprob_from_logits(forward_logits(model, batch), batch["labels"])


def answer_ce_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean answer-token cross-entropy over all answer tokens of the batch (the HF causal-LM loss)."""
    logp, mask = token_logprobs(logits, labels)
    return -logp.sum() / mask.sum().clamp(min=1)


def answer_ce(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean answer-token cross-entropy of a batch."""
    return answer_ce_from_logits(forward_logits(model, batch), batch["labels"])


def retain_kl_from_logits(logits: torch.Tensor, ref_logits: torch.Tensor,
                          labels: torch.Tensor) -> torch.Tensor:
    """KL(π_ref ‖ π_θ) summed over the vocabulary, averaged over the retain answer positions."""
    mask = labels[:, 1:] != IGNORE_INDEX
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    ref_logp = torch.log_softmax(ref_logits[:, :-1].float(), dim=-1)
    kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1)
    return (kl * mask).sum() / mask.sum().clamp(min=1)


def is_peft(model: nn.Module) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def count_params(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; shared tensors are counted once."""
    seen, trainable, total = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


def wrap_lora(model: nn.Module, lora: dict, seed: int = 0, target_modules: Any = "all-linear") -> nn.Module:
    """peft LoRA on every Linear except the LM head (or on `target_modules`); only adapters train."""
    from peft import LoraConfig, get_peft_model

    known = {"r", "alpha", "dropout"}
    unknown = sorted(set(lora) - known)
    if unknown:
        raise UnlearnError(f"unknown LoRA setting(s) {unknown}: use r, alpha, dropout")
    r = int(lora.get("r", 16))
    config = LoraConfig(r=r, lora_alpha=lora.get("alpha", 2 * r), lora_dropout=lora.get("dropout", 0.05),
                        target_modules=target_modules, bias="none", task_type="CAUSAL_LM")
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        # peft 0.21 calls a transformers-5 deprecated alias; not ours to fix
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        torch.manual_seed(seed)  # lora_A is random: fix it without touching the global RNG
        return get_peft_model(model, config)


# ---------------------------------------------------------------- parameters and trainer

@dataclass
class LossParams(MethodParams):
    """The open-unlearning total: loss = gamma * forget_loss + alpha * retain_loss (every
    UnlearnTrainer reads these three; a method subclasses this and adds its own)."""

    gamma: float = param(1.0, "weight of the forget loss")
    alpha: float = param(1.0, "weight of the retain loss")
    retain_loss: str = param("none", "retain term: none, nll (GD) or kl (KL to the original model); "
                                     "the trainer says which it supports")


def check_beta(params) -> None:
    """beta divides the loss (NPO, DPO, SimNPO): a number > 0."""
    beta = params.beta
    if isinstance(beta, bool) or not isinstance(beta, int | float) or not beta > 0:
        default = type(params).__dataclass_fields__["beta"].default
        raise UnlearnError(f"beta={beta} is out of range; the loss divides by beta, so use a number > 0 "
                           f"(default {default})")


class UnlearnTrainer(Trainer):
    """Trainer over {"forget", "retain", ...} batches; subclasses define `forget_loss`.

    `params` is the method's parameter dataclass (a LossParams: gamma, alpha, retain_loss, plus the
    method's own such as beta), checked by `check_params` when the method resolves it.
    """

    name = "base"
    needs_reference = False  # forget loss uses π_ref (NPO, DPO)
    uses_refusals = False  # items carry "forget_idk" (DPO/IdK)
    # compute_loss returns a per-micro-batch mean: the Trainer divides it by the accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(self, *args, params: MethodParams, **kwargs):
        super().__init__(*args, **kwargs)
        self.params = params
        self._term_sums: dict[str, float] = defaultdict(float)
        self._term_counts: dict[str, int] = defaultdict(int)
        self.ref_model = None
        if self.uses_reference(self.params) and not is_peft(self.model):
            self.ref_model = make_reference(self.model, self.args.device)
        if hasattr(self.train_dataset, "set_epoch"):
            self.add_callback(DatasetEpoch(self.train_dataset))

    # -- hooks for `unlearn()` (classmethods: they run before the trainer exists)

    @classmethod
    def retain_losses(cls) -> tuple[str, ...]:
        return RETAIN_LOSSES

    @classmethod
    def check_params(cls, params: MethodParams) -> None:
        """Refuse parameter values this trainer cannot use (runs when the method resolves params)."""
        if params.retain_loss not in cls.retain_losses():
            raise UnlearnError(f"retain_loss={params.retain_loss!r} is not supported by {cls.name}: "
                               f"use one of {', '.join(cls.retain_losses())}")

    @classmethod
    def needs_retain(cls, params: MethodParams) -> bool:
        return params.retain_loss != "none"

    @classmethod
    def uses_reference(cls, params: MethodParams) -> bool:
        """The loss needs the frozen original model (NPO, DPO, or a KL retain term)."""
        return cls.needs_reference or params.retain_loss == "kl"

    @classmethod
    def prepare_model(cls, model: nn.Module, params: MethodParams, settings: TrainArgs) -> nn.Module:
        """The model the Trainer trains: the target itself, or the target wrapped with LoRA."""
        if settings.lora:
            return wrap_lora(model, settings.lora, settings.seed)
        return model

    @classmethod
    def training_parts(cls, forget: list[dict], retain: list[dict], params: MethodParams,
                       settings: TrainArgs,
                       augmentation: list[dict] | None = None) -> dict[str, list[dict]]:
        """The training records by part, as the dataset will hold them (checked by the leak guard)."""
        return {"forget": list(forget), "retain": list(retain) if cls.needs_retain(params) else []}

    @classmethod
    def build_dataset(cls, forget: list[dict], retain: list[dict], tokenizer, params: MethodParams,
                      settings: TrainArgs, counter: TruncationCounter,
                      refusals: list[str] | None = None,
                      augmentation: list[dict] | None = None) -> torch.utils.data.Dataset:
        if augmentation:
            raise UnlearnError(f"method {cls.name} takes no augmentation file (only uld does): drop it")
        retain = retain if cls.needs_retain(params) else []
        if cls.needs_retain(params) and not retain:
            raise UnlearnError(f"method {cls.name} with retain_loss={params.retain_loss} needs "
                               "retain examples: give a retain split")
        if cls.uses_refusals and refusals is None:
            refusals = load_refusals(params.refusal_file)
        return ForgetRetainDataset(forget, retain, tokenizer, settings.max_length, settings.seed,
                                   refusals if cls.uses_refusals else None, counter)

    @classmethod
    def collator(cls, tokenizer) -> PairedCollator:
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        return PairedCollator(pad, "right")

    # -- reference model

    @torch.no_grad()
    def reference_logits(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits of the frozen original model: the deepcopy, or the peft model with adapters off."""
        if self.ref_model is not None:
            return forward_logits(self.ref_model, batch)
        model = self.accelerator.unwrap_model(model)
        was_training = model.training
        model.eval()  # no dropout in the reference, as with a separate eval-mode copy
        try:
            with model.disable_adapter():
                return forward_logits(model, batch)
        finally:
            model.train(was_training)

    # -- losses

    def forget_loss(self, model: nn.Module, inputs: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(forget loss, extra terms to log); the method's definition."""
        raise NotImplementedError

    def retain_loss(self, model: nn.Module, inputs: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """NLL (GD) or KL(π_ref ‖ π_θ) (KL) on the retain batch."""
        batch = inputs["retain"]
        logits = forward_logits(model, batch)
        if self.params.retain_loss == "kl":
            return retain_kl_from_logits(logits, self.reference_logits(model, batch), batch["labels"]), {}
        return answer_ce_from_logits(logits, batch["labels"]), {}

    def loss_terms(self, model: nn.Module, inputs: dict) -> dict[str, torch.Tensor]:
        """All loss terms; "loss" = gamma * forget_loss + alpha * retain_loss."""
        forget, terms = self.forget_loss(model, inputs)
        terms["forget_loss"] = forget
        loss = self.params.gamma * forget
        if self.params.retain_loss != "none":
            retain, extra = self.retain_loss(model, inputs)
            terms.update(extra)
            terms["retain_loss"] = retain
            loss = loss + self.params.alpha * retain
        terms["loss"] = loss
        return terms

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        terms = self.loss_terms(model, inputs)
        loss = terms["loss"]
        if not torch.isfinite(loss):
            raise UnlearnError(
                f"training loss became {loss.item()} at step {self.state.global_step + 1}: lower the "
                f"learning rate (now {self.args.learning_rate:g}) or check the data"
            )
        if model.training:
            for key, value in terms.items():
                if key != "loss":
                    self._term_sums[key] += float(value.detach())
                    self._term_counts[key] += 1
        return (loss, None) if return_outputs else loss

    def extra_record(self) -> dict:
        """What the method adds to its training record (UnlearnResult.extra) after training."""
        return {}

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds the mean of each loss term since the last log to the Trainer's training logs."""
        if "loss" in logs and self._term_counts:
            for key, total in self._term_sums.items():
                logs[key] = total / self._term_counts[key]
            if self.args.world_size > 1:  # every rank logs at the same steps: average over ranks
                keys = sorted(self._term_sums)
                means = torch.tensor([logs[k] for k in keys], device=self.args.device)
                logs.update(zip(keys, self.accelerator.reduce(means, "mean").tolist(), strict=True))
            self._term_sums.clear()
            self._term_counts.clear()
        super().log(logs, start_time)


def make_reference(model: nn.Module, device=None) -> nn.Module:
    """A frozen eval-mode copy of the model before training (same device and dtype, never trained)."""
    ref = copy.deepcopy(model)
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref.to(device) if device is not None else ref


@dataclass
class UnlearnResult:
    """What `unlearn()` returns: the trained model ready to evaluate and what happened in training.

    For ULD, `model` is the assistant (a peft model sharing the target's weights); build the
    logit-difference model from the untouched target and it.
    """

    method: str
    model: nn.Module
    params: MethodParams
    train: TrainArgs
    log_history: list[dict]
    epoch_seconds: list[float]
    train_seconds: float
    global_steps: int
    trainable_params: int
    total_params: int
    truncated: int = 0
    out_dir: Any = None
    extra: dict = field(default_factory=dict)
    train_records: list[dict] = field(default_factory=list)  # what the trainer saw, with each part
