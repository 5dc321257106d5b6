"""GA + KL: GA on the forget set, KL(π_ref ‖ π_θ) on the retain answer tokens to stay near the original."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearnkit.methods.base import LossParams, retain_kl_from_logits
from unlearnkit.methods.ga import GATrainer, ga_loss
from unlearnkit.methods.params import param
from unlearnkit.methods.registry import Method, register


def kl_loss(forget_nll: torch.Tensor, logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor,
            gamma: float = 1.0, alpha: float = 1.0) -> torch.Tensor:
    """gamma · (−CE(forget)) + alpha · KL(π_ref ‖ π_θ) averaged over retain answer positions."""
    return gamma * ga_loss(forget_nll) + alpha * retain_kl_from_logits(logits, ref_logits, labels)


class KLTrainer(GATrainer):
    name = "kl"

    @classmethod
    def retain_losses(cls) -> tuple[str, ...]:
        return ("kl",)


@dataclass
class KLParams(LossParams):
    retain_loss: str = param("kl", "retain term: kl (the only one GA+KL supports)")


register(Method("kl", KLTrainer, KLParams, aliases=("ga_kl",),
                description="gradient ascent + KL(ref || model) on retain"))
