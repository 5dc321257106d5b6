"""ULD (Ji et al. 2024): train a small assistant that knows only the forget set; subtract its logits.

Only the assistant trains (LoRA on the target's first K layers, weights shared with the target, which
stays untouched). Loss: L = CE_f + λ · KL(U ‖ p_a), CE_f on D'f (forget answers, plus paraphrases from
an augmentation file) and the KL to the uniform distribution on D'r (retain answers, plus the file's
wrong answers to the forget questions), so that the assistant is confident only about the forget
answers (docs/design.md §4). The augmentation never comes from the evaluated split (see data.augment).
"""

from __future__ import annotations

import math

import torch

from unlearnkit.data.formatting import IGNORE_INDEX
from unlearnkit.data.unlearning import ForgetRetainDataset
from unlearnkit.errors import UnlearnError
from unlearnkit.methods.base import UnlearnTrainer, answer_ce_from_logits, forward_logits
from unlearnkit.methods.uld.assistant import build_assistant
from unlearnkit.methods.uld.data import uld_parts
from unlearnkit.training.arguments import TrainArgs

KL_POSITIONS = ("all", "answer")


def uniform_kl(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(U ‖ p) = −log V − mean_v log p_v at each position, averaged over positions where mask is on."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    kl = -math.log(logits.shape[-1]) - logp.mean(-1)
    mask = mask.to(kl.dtype)
    return (kl * mask).sum() / mask.sum().clamp(min=1)


def uniform_kl_positions(logits: torch.Tensor, batch: dict[str, torch.Tensor],
                         positions: str = "all") -> torch.Tensor:
    """KL(U ‖ p_a) over every non-pad position ("all", the official code) or answer-predicting ones."""
    if positions == "all":
        return uniform_kl(logits, batch["attention_mask"].bool())
    if positions == "answer":
        return uniform_kl(logits[:, :-1], batch["labels"][:, 1:] != IGNORE_INDEX)
    raise UnlearnError(f"kl_positions={positions!r} is not valid: use one of {', '.join(KL_POSITIONS)}")


def uld_loss(forget_ce: torch.Tensor, retain_kl: torch.Tensor, kl_weight: float = 5.0) -> torch.Tensor:
    """CE_f + λ · KL(U ‖ p_a)."""
    return forget_ce + kl_weight * retain_kl


class ULDTrainer(UnlearnTrainer):
    """Trains the assistant (the Trainer's model is the assistant peft model, never the target)."""

    name = "uld"

    @classmethod
    def check_params(cls, params) -> None:
        """ULDParams validate themselves (there is no retain_loss choice)."""

    @classmethod
    def needs_retain(cls, params) -> bool:
        return True

    @classmethod
    def uses_reference(cls, params) -> bool:
        return False

    @classmethod
    def prepare_model(cls, model, params, settings: TrainArgs):
        return build_assistant(model, params.num_layers, settings.lora or params.lora, seed=settings.seed)

    @classmethod
    def training_parts(cls, forget, retain, params, settings, augmentation=None):
        return uld_parts(forget, retain, augmentation, settings.seed, params.retain_size,
                         params.augment_questions, params.augment_paraphrases, params.augment_wrong)

    @classmethod
    def build_dataset(cls, forget, retain, tokenizer, params, settings, counter, refusals=None,
                      augmentation=None):
        parts = cls.training_parts(forget, retain, params, settings, augmentation)
        forget_side, retain_side = ("forget", "augment_forget"), ("retain", "augment_retain")
        return ForgetRetainDataset(
            [r for name in forget_side for r in parts[name]],
            [r for name in retain_side for r in parts[name]],
            tokenizer, settings.max_length, settings.seed, None, counter,
            forget_parts=[name for name in forget_side for _ in parts[name]],
            retain_parts=[name for name in retain_side for _ in parts[name]])

    def loss_terms(self, model, inputs):
        forget, retain = inputs["forget"], inputs["retain"]
        ce = answer_ce_from_logits(forward_logits(model, forget), forget["labels"])
        kl = uniform_kl_positions(forward_logits(model, retain), retain, self.params.kl_positions)
        loss = uld_loss(ce, kl, self.params.kl_weight)
        return {"forget_loss": ce, "retain_loss": kl, "loss": loss}

    def extra_record(self) -> dict:
        return {**super().extra_record(), "num_layers": self.model.get_base_model().config.num_hidden_layers}
