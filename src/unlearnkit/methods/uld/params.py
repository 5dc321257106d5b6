"""ULD's parameters: the assistant (K layers + LoRA), its loss, its augmentation, and the w and f of
the logit difference used at inference."""

from __future__ import annotations

from dataclasses import dataclass

from unlearnkit.errors import UnlearnError
from unlearnkit.methods.params import MethodParams, param
from unlearnkit.methods.uld.assistant import LoraSettings
from unlearnkit.methods.uld.model import DEFAULT_FILTER_FACTOR, DEFAULT_WEIGHT, check_weight_and_filter
from unlearnkit.methods.uld.trainer import KL_POSITIONS


@dataclass
class ULDParams(MethodParams):
    """Defaults of the official ULD code (TOFU): K = N/4, LoRA r16/alpha32, lambda 5, w 0.8, f 1e-2."""

    num_layers: int | None = param(None, "assistant depth K: the target's first K layers (null: N/4)")
    lora: LoraSettings = param(LoraSettings, "the assistant's LoRA: r, alpha, dropout (train.lora, when "
                                             "set, replaces it)")
    kl_weight: float = param(5.0, "lambda: weight of KL(uniform || assistant) on D'r")
    kl_positions: str = param("all", "where the KL applies: all non-pad positions (the official code) or "
                                     "answer-predicting ones")
    augment_file: str | None = param(None, "augmentation: a forgetXX_augment.jsonl or the ULD authors' "
                                           "CSV directory (null: D'f = the forget set)", path=True)
    augment_questions: bool = param(True, "pair the file's paraphrased questions with its paraphrased "
                                          "answers")
    augment_paraphrases: int | None = param(None, "at most this many paraphrases per question (null: all)")
    augment_wrong: int | None = param(None, "at most this many wrong answers per question (null: all)")
    retain_size: int | str | None = param(None, "retain pairs in D'r: null (|Df|, the official choice), "
                                                "\"all\" or a number")
    weight: float = param(DEFAULT_WEIGHT, "w in z = z_target - w * z_assistant (>= 0)")
    filter_factor: float = param(DEFAULT_FILTER_FACTOR, "f of the relative-top filter, in (0, 1] (1: off)")
    select_best_epoch: bool = param(False, "keep the epoch with the best forget quality on validation_file "
                                           "(else the last)")
    validation_file: str | None = param(None, "held-out perturbed-schema rows (e.g. data/forgetXX_validation"
                                              ".jsonl) for select_best_epoch", path=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_weight_and_filter(self.weight, self.filter_factor)
        k = self.num_layers
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise UnlearnError(f"assistant num_layers={k} is out of range: use an integer >= 1 "
                               "(at most the target's number of layers), or null for N/4")
        if self.kl_positions not in KL_POSITIONS:
            raise UnlearnError(f"kl_positions={self.kl_positions!r} is not valid: use one of "
                               f"{', '.join(KL_POSITIONS)}")
        if self.select_best_epoch and not self.validation_file:
            raise UnlearnError("select_best_epoch needs method.params.validation_file: held-out questions "
                               "(e.g. data/forgetXX_validation.jsonl from unlearn prepare); the reported "
                               "forget split never picks the epoch")
