"""Negative Preference Optimization (Zhang et al. 2024): DPO with only a rejected answer.

L = (2/β) · mean log(1 + (π_θ(y|x)/π_ref(y|x))^β) = −(2/β) · mean log σ(−β (log π_θ − log π_ref)),
bounded below unlike GA, so it forgets without collapsing as fast. npo_gd / npo_kl add a retain term.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from unlearnkit.methods.base import (
    LossParams,
    UnlearnTrainer,
    check_beta,
    forward_logits,
    sequence_logprob_from_logits,
)
from unlearnkit.methods.params import param
from unlearnkit.methods.registry import Method, register


def npo_loss(logp_theta: torch.Tensor, logp_ref: torch.Tensor, beta: float = 0.1) -> torch.Tensor:
    """NPO loss from per-sample sequence log-probs (sums over answer tokens)."""
    return -(2.0 / beta) * F.logsigmoid(-beta * (logp_theta - logp_ref)).mean()


class NPOTrainer(UnlearnTrainer):
    name = "npo"
    needs_reference = True

    def forget_loss(self, model, inputs):
        batch = inputs["forget"]
        logp, n = sequence_logprob_from_logits(forward_logits(model, batch), batch["labels"])
        logp_ref, _ = sequence_logprob_from_logits(self.reference_logits(model, batch), batch["labels"])
        loss = npo_loss(logp, logp_ref, self.params.beta)
        return loss, {"forget_nll": -(logp.sum() / n.sum()), "log_ratio": (logp - logp_ref).mean()}


@dataclass
class NPOParams(LossParams):
    """open-unlearning's NPO: beta 0.1, gamma 1, alpha 1."""

    beta: float = param(0.1, "inverse temperature of the log-ratio (> 0; the loss divides by it)")

    def __post_init__(self):
        super().__post_init__()
        check_beta(self)


@dataclass
class NPOGDParams(NPOParams):
    retain_loss: str = param("nll", "retain term: none, nll or kl")


@dataclass
class NPOKLParams(NPOParams):
    retain_loss: str = param("kl", "retain term: none, nll or kl")


register(Method("npo", NPOTrainer, NPOParams, description="negative preference optimization"))
register(Method("npo_gd", NPOTrainer, NPOGDParams, description="NPO + retain NLL"))
register(Method("npo_kl", NPOTrainer, NPOKLParams, description="NPO + KL on retain"))
