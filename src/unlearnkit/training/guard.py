"""The no-update guard: a training run that changed no weight must not look like a successful one.

It happens quietly with small data: 12 forget rows at batch 8 x accumulation 4 make one optimizer step
per epoch, and with warmup that step runs at learning rate 0. `UpdateGuard` records the learning rate
of every optimizer step and fingerprints the trainable weights before training; `check` raises a
one-line UnlearnError naming why nothing changed and what to change.
"""

from __future__ import annotations

import torch
from transformers import TrainerCallback

from unlearnkit.errors import UnlearnError


class NoUpdateError(UnlearnError):
    """Training finished without changing any trainable weight (callers drop its partial outputs)."""


@torch.no_grad()
def fingerprint(model: torch.nn.Module) -> list[tuple[str, float, float]]:
    """(name, sum, sum of squares) in float64 of every trainable tensor: any real update changes it."""
    out = []
    for name, p in model.named_parameters():
        if p.requires_grad:
            x = p.detach().double()
            out.append((name, float(x.sum()), float((x * x).sum())))
    return out


class UpdateGuard(TrainerCallback):
    """Learning rate of each optimizer step (this process) and the trainable weights' fingerprint."""

    def __init__(self, model: torch.nn.Module):
        self.before = fingerprint(model)
        self.lrs: list[float] = []

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        if optimizer is not None:
            self.lrs.append(max(float(g["lr"]) for g in optimizer.param_groups))

    def check(self, model: torch.nn.Module, rows: int, batch_size: int, grad_accum: int, epochs: float,
              warmup: float, max_steps: int = -1, allow_key: str = "train.allow_no_update=true") -> None:
        """Raise NoUpdateError when `model`'s trainable weights equal those before training."""
        if not self.before or fingerprint(model) != self.before:
            return
        per_step = batch_size * grad_accum
        length = f"max_steps {max_steps}" if max_steps > 0 else f"{epochs:g} epoch(s)"
        shape = f"{rows} training rows at batch {batch_size} x accumulation {grad_accum}, {length}"
        if not self.lrs:
            why = f"no optimizer step ran ({shape})"
        elif all(lr == 0 for lr in self.lrs):
            why = (f"its {len(self.lrs)} optimizer step(s) all ran at learning rate 0 ({shape}, warmup "
                   f"{warmup:g} of the steps)")
        else:
            why = f"its {len(self.lrs)} optimizer step(s) left every trainable weight unchanged ({shape})"
        raise NoUpdateError(
            f"training applied no update: {why}; raise the epochs, lower batch_size x grad_accum "
            f"(now {per_step} rows per step) or the warmup, or pass {allow_key} to measure the "
            "untrained model on purpose")
