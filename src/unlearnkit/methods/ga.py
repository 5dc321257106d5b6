"""Gradient Ascent (GA): maximise the forget answers' NLL, i.e. minimise −CE(forget)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearnkit.methods.base import LossParams, UnlearnTrainer, answer_ce
from unlearnkit.methods.registry import Method, register


def ga_loss(forget_nll: torch.Tensor) -> torch.Tensor:
    """−CE on the forget answers (CE = mean answer-token cross-entropy)."""
    return -forget_nll


class GATrainer(UnlearnTrainer):
    """GA; with retain_loss=nll it is GD, with retain_loss=kl it is GA+KL (see gd.py, kl.py)."""

    name = "ga"

    def forget_loss(self, model, inputs):
        nll = answer_ce(model, inputs["forget"])
        return ga_loss(nll), {"forget_nll": nll}


@dataclass
class GAParams(LossParams):
    """GA: the forget term alone (retain_loss=none)."""


register(Method("ga", GATrainer, GAParams, description="gradient ascent on the forget set"))
