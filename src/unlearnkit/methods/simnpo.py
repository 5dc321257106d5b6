"""SimNPO (Fan et al. 2024): reference-free, length-normalised NPO.

Paper: L = −(2/β) log σ(−(β/|y|) log π_θ(y|x) − γ). Like open-unlearning and the official code we
write the margin inside β: −(2/β) log σ(β(−log π_θ(y|x)/|y| − δ)), so the paper's γ = β·δ (default 0).
The retain NLL term is on by default (open-unlearning: gamma 0.125 on forget, alpha 1 on retain).
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


def simnpo_loss(logp_theta: torch.Tensor, n_tokens: torch.Tensor, beta: float = 4.5,
                delta: float = 0.0) -> torch.Tensor:
    """SimNPO loss from per-sample sequence log-probs and answer lengths."""
    return -(2.0 / beta) * F.logsigmoid(beta * (-logp_theta / n_tokens.clamp(min=1) - delta)).mean()


class SimNPOTrainer(UnlearnTrainer):
    name = "simnpo"

    def forget_loss(self, model, inputs):
        batch = inputs["forget"]
        logp, n = sequence_logprob_from_logits(forward_logits(model, batch), batch["labels"])
        loss = simnpo_loss(logp, n, self.params.beta, self.params.delta)
        return loss, {"forget_nll": -(logp.sum() / n.sum())}


@dataclass
class SimNPOParams(LossParams):
    """open-unlearning's SimNPO: beta 4.5, delta 0, gamma 0.125 on forget, alpha 1 on the retain NLL."""

    beta: float = param(4.5, "inverse temperature (> 0; the loss divides by it)")
    delta: float = param(0.0, "margin on the length-normalised NLL (the paper's gamma = beta * delta)")
    gamma: float = param(0.125, "weight of the forget loss")
    retain_loss: str = param("nll", "retain term: none, nll or kl")

    def __post_init__(self):
        super().__post_init__()
        check_beta(self)


register(Method("simnpo", SimNPOTrainer, SimNPOParams,
                description="reference-free length-normalised NPO + retain NLL"))
