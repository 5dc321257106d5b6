"""Gradient Difference (GD): GA on the forget set plus the usual NLL on the retain set."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearnkit.methods.base import LossParams
from unlearnkit.methods.ga import GATrainer, ga_loss
from unlearnkit.methods.params import param
from unlearnkit.methods.registry import Method, register


def gd_loss(forget_nll: torch.Tensor, retain_nll: torch.Tensor, gamma: float = 1.0,
            alpha: float = 1.0) -> torch.Tensor:
    """gamma · (−CE(forget)) + alpha · CE(retain)."""
    return gamma * ga_loss(forget_nll) + alpha * retain_nll


class GDTrainer(GATrainer):
    name = "gd"

    @classmethod
    def retain_losses(cls) -> tuple[str, ...]:
        return ("nll",)


@dataclass
class GDParams(LossParams):
    retain_loss: str = param("nll", "retain term: nll (the only one GD supports)")


register(Method("gd", GDTrainer, GDParams, description="gradient ascent + retain NLL"))
