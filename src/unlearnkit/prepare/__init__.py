"""`unlearn prepare`: the presets that build a benchmark world, sharing one step runner (steps.py).

world.py: generated TOFU-like worlds (micro, mini, small, smollm2); moe.py: the multi-domain MoE world
(moe, moe-plain, moe-mixtral, moe-micro); tofu.py: target and retain models on real TOFU data
(tofu-smollm2, tofu-micro).
"""

from unlearnkit.prepare.moe import MOE_PRESETS, MoePreset, prepare_moe, resolve_moe_preset
from unlearnkit.prepare.steps import STEP_FILE
from unlearnkit.prepare.tofu import TOFU_PRESETS, TofuPreset, prepare_tofu, resolve_tofu_preset
from unlearnkit.prepare.world import AUGMENT_STEP_FILE, PRESETS, PreparePreset, prepare, resolve_preset

__all__ = [
    "AUGMENT_STEP_FILE", "MOE_PRESETS", "PRESETS", "STEP_FILE", "TOFU_PRESETS", "MoePreset", "PreparePreset",
    "TofuPreset", "prepare", "prepare_moe", "prepare_tofu", "resolve_moe_preset", "resolve_preset",
    "resolve_tofu_preset",
]
