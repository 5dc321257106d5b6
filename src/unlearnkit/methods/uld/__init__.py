"""ULD (Ji et al. 2024): unlearning from logit difference.

A small assistant (the target's first K layers + LoRA, weights shared) learns the forget set; the
unlearned model is z = z_target - w * z_assistant (`model.ULDModel`). The package holds the whole
method: parameters (`params`), trainer (`trainer`), assistant construction (`assistant`), the
logit-difference model and its artifact (`model`), training data (`data`), epoch selection
(`selection`) and its part of `unlearn run` (`run`). Importing it registers the method and teaches
`models.loading.load_model_and_tokenizer` to load its artifacts.
"""

from __future__ import annotations

from pathlib import Path

from unlearnkit.methods.base import TOFU_TRAIN
from unlearnkit.methods.registry import Method, register
from unlearnkit.methods.uld.assistant import LoraSettings, build_assistant, default_num_layers
from unlearnkit.methods.uld.model import ULDConfig, ULDModel, check_overrides, is_uld_artifact, load_uld
from unlearnkit.methods.uld.params import ULDParams
from unlearnkit.methods.uld.run import ULDRun
from unlearnkit.methods.uld.trainer import ULDTrainer
from unlearnkit.models.loading import register_artifact_loader


def load_artifact(path: Path, trust_remote_code: bool = False):
    """A ULD artifact loaded to run (LoRA merged into the assistant), not to train further."""
    return load_uld(path, trust_remote_code=trust_remote_code, merge=True)


register(Method("uld", ULDTrainer, ULDParams, train={**TOFU_TRAIN, "lr": 1e-3}, run_cls=ULDRun,
                description="unlearning from logit difference (trains a small assistant)"))
register_artifact_loader(is_uld_artifact, load_artifact)

__all__ = ["LoraSettings", "ULDConfig", "ULDModel", "ULDParams", "ULDRun", "ULDTrainer", "build_assistant",
           "check_overrides", "default_num_layers", "is_uld_artifact", "load_uld"]
