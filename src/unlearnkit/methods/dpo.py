"""DPO / IdK (Rafailov et al. 2023; Maini et al. 2024): prefer a refusal over the forget answer.

L = −(2/β) · mean log σ(β[(log π_θ(y_w) − log π_ref(y_w)) − (log π_θ(y_l) − log π_ref(y_l))]) with
y_w a refusal ("I don't know" variants) and y_l the forget answer. dpo_gd / dpo_kl add a retain term.
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


def dpo_loss(logp_w: torch.Tensor, ref_w: torch.Tensor, logp_l: torch.Tensor, ref_l: torch.Tensor,
             beta: float = 0.1) -> torch.Tensor:
    """DPO loss from per-sample sequence log-probs of preferred (w) and rejected (l) answers."""
    return -(2.0 / beta) * F.logsigmoid(beta * ((logp_w - ref_w) - (logp_l - ref_l))).mean()


class DPOTrainer(UnlearnTrainer):
    name = "dpo"
    needs_reference = True
    uses_refusals = True

    def _logps(self, model, batch):
        logp, _ = sequence_logprob_from_logits(forward_logits(model, batch), batch["labels"])
        ref, _ = sequence_logprob_from_logits(self.reference_logits(model, batch), batch["labels"])
        return logp, ref

    def forget_loss(self, model, inputs):
        logp_w, ref_w = self._logps(model, inputs["forget_idk"])
        logp_l, ref_l = self._logps(model, inputs["forget"])
        loss = dpo_loss(logp_w, ref_w, logp_l, ref_l, self.params.beta)
        return loss, {"refusal_logp": logp_w.mean(), "forget_logp": logp_l.mean()}


@dataclass
class DPOParams(LossParams):
    """open-unlearning's IdK-DPO: beta 0.1, gamma 1, alpha 1, the built-in refusals."""

    beta: float = param(0.1, "inverse temperature (> 0; the loss divides by it)")
    refusal_file: str | None = param(None, "text file with one refusal answer per line (null: built-in "
                                           "refusals)", path=True)

    def __post_init__(self):
        super().__post_init__()
        check_beta(self)


@dataclass
class DPOGDParams(DPOParams):
    retain_loss: str = param("nll", "retain term: none, nll or kl")


@dataclass
class DPOKLParams(DPOParams):
    retain_loss: str = param("kl", "retain term: none, nll or kl")


register(Method("dpo", DPOTrainer, DPOParams, aliases=("idk",),
                description="DPO preferring a refusal over the forget answer"))
register(Method("dpo_gd", DPOTrainer, DPOGDParams, description="DPO/IdK + retain NLL"))
register(Method("dpo_kl", DPOTrainer, DPOKLParams, description="DPO/IdK + KL on retain"))
