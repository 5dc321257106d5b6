"""UOE (Unlearning One Expert) for mixture-of-experts models: uoe_ga, uoe_gd, uoe_npo and uoe_rmu.

Registers the four methods; the trainers are in uoe.trainer, the parameters in uoe.params, and the
generic MoE helpers (affinity, expert restriction, anchor loss) in models.moe.
"""

from __future__ import annotations

from unlearnkit.methods.registry import Method, MethodRun, register
from unlearnkit.methods.uoe.params import UOEGAParams, UOEGDParams, UOENPOParams, UOERMUParams
from unlearnkit.methods.uoe.trainer import UOEGATrainer, UOEGDTrainer, UOEMixin, UOENPOTrainer, UOERMUTrainer

# Tiny-model recipe (`unlearn prepare --preset moe`): one expert has few weights, so a larger lr.
UOE_TRAIN = {"lr": 1e-3, "epochs": 5, "batch_size": 16, "grad_accum": 1, "weight_decay": 0.0,
             "warmup_ratio": 0.0}


class UOERun(MethodRun):
    """Routing diagnostics follow the expert that was unlearned."""

    def watched_expert(self, result) -> tuple[int, int]:
        return result.extra["expert_layer"], result.extra["expert"]


register(Method("uoe_ga", UOEGATrainer, UOEGAParams, train=UOE_TRAIN, run_cls=UOERun,
                description="gradient ascent on one expert (highest forget affinity) + router anchor"))
register(Method("uoe_gd", UOEGDTrainer, UOEGDParams, train=UOE_TRAIN, run_cls=UOERun,
                description="UOE with gradient difference (retain NLL)"))
register(Method("uoe_npo", UOENPOTrainer, UOENPOParams, train=UOE_TRAIN, run_cls=UOERun,
                description="UOE with NPO"))
register(Method("uoe_rmu", UOERMUTrainer, UOERMUParams, train=UOE_TRAIN, run_cls=UOERun,
                description="UOE with RMU steered at the expert's layer"))

__all__ = ["UOE_TRAIN", "UOEGATrainer", "UOEGDTrainer", "UOEMixin", "UOENPOTrainer", "UOERMUTrainer",
           "UOERun"]
