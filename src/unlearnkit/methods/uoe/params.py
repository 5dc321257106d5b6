"""UOE's parameters: which expert to unlearn (or how to pick it) and the router anchor; combined with
the parameters of the forget/retain method it wraps (GA, GD, NPO, RMU)."""

from __future__ import annotations

from dataclasses import dataclass

from unlearnkit.errors import UnlearnError
from unlearnkit.methods.ga import GAParams
from unlearnkit.methods.gd import GDParams
from unlearnkit.methods.npo import NPOParams
from unlearnkit.methods.params import MethodParams, param
from unlearnkit.methods.rmu import RMUParams

SELECTIONS = ("affinity", "contrast")


@dataclass
class ExpertParams(MethodParams):
    """The one-expert part, put first in a UOE method's bases (see uoe.trainer.UOEMixin)."""

    expert_layer: int | None = param(None, "layer of the expert to unlearn (null with expert: auto-select)")
    expert: int | None = param(None, "the expert to unlearn in expert_layer (null with expert_layer: "
                                     "auto-select)")
    selection: str = param("affinity", "auto-selection score: affinity (the paper: highest forget affinity) "
                                       "or contrast (forget minus retain affinity; needs retain data)")
    anchor_weight: float = param(1.0, "alpha: weight of the router anchor keeping forget tokens on the "
                                      "expert (0 disables it)")
    router_lr_scale: float = param(1.0, "router lr = scale x lr (0 freezes the router)")
    retain_anchor_weight: float = param(0.0, "beta: weight of the retain anchor routing retain tokens as "
                                             "before but away from the expert (0: off, the paper)")
    candidate_layers: list[int] | None = param(None, "MoE layers auto-selection may pick from (null: all)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if float(self.router_lr_scale) < 0:
            raise UnlearnError(f"router_lr_scale={float(self.router_lr_scale)} must be >= 0 (0 freezes the "
                               "router)")
        if (self.expert_layer is None) != (self.expert is None):
            raise UnlearnError("give both expert_layer and expert, or neither (auto-select)")
        if self.selection not in SELECTIONS:
            raise UnlearnError(f"selection={self.selection!r} is not valid: use one of "
                               f"{', '.join(SELECTIONS)}")


@dataclass
class UOEGAParams(ExpertParams, GAParams):
    pass


@dataclass
class UOEGDParams(ExpertParams, GDParams):
    pass


@dataclass
class UOENPOParams(ExpertParams, NPOParams):
    pass


@dataclass
class UOERMUParams(ExpertParams, RMUParams):
    pass
