"""ULD's part of `unlearn run`: its checks, augmentation and validation data, the best-epoch callback,
and the final model -- target - w * assistant, saved as a small artifact (adapter + uld_config.json)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from unlearnkit.errors import UnlearnError
from unlearnkit.methods.registry import MethodRun
from unlearnkit.methods.uld.data import load_augmentation, load_validation
from unlearnkit.methods.uld.model import ULDModel
from unlearnkit.methods.uld.selection import BestEpoch


class ULDRun(MethodRun):
    """Only the assistant trains, so the target's MoE routing (if any) never changes: no monitor."""

    monitors_routing = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.augment_entry: dict | None = None
        self.validation: list[dict] | None = None
        self.best: BestEpoch | None = None

    def check(self) -> None:
        if self.params.select_best_epoch and not self.ctx.reference_is_model():
            raise UnlearnError("select_best_epoch scores forget quality on the validation file against the "
                               "retain model: pass --reference as the retain model's directory, or keep "
                               "the last epoch (select_best_epoch=false)")

    def load_data(self) -> list[dict] | None:
        cfg, perturbed = self.ctx.cfg, self.ctx.data.perturbed
        rows, self.augment_entry = load_augmentation(self.params.augment_file, cfg.data.forget, perturbed,
                                                     cfg.data.allow_eval_overlap, self.ctx.say)
        if self.params.select_best_epoch:
            self.validation = load_validation(self.params.validation_file, cfg.data.forget, perturbed)
        return rows

    def inference_model(self, target, trained) -> ULDModel:
        return ULDModel.from_target(target, trained, self.params.weight, self.params.filter_factor)

    def callbacks(self) -> list:
        if self.validation is None:
            return []
        retain, retain_tok = self.ctx.load_retain_model()
        retain.eval()
        reference = self.ctx.truth_ratios(retain, retain_tok, self.validation)
        score = partial(self.ctx.truth_ratios, tokenizer=self.ctx.tokenizer, rows=self.validation)
        self.best = BestEpoch(partial(self.inference_model, self.ctx.model), score, reference)
        if self.ctx.resume_from is not None:
            self.best.load(self.ctx.resume_from)
        return [self.best]

    def record(self, result) -> dict:
        if self.best is not None:
            choice = {"rule": "best validation forget quality",
                      "validation_file": str(self.params.validation_file),
                      "validation_rows": len(self.validation),
                      "epoch": self.best.restore(result.model), "history": self.best.history}
        else:
            choice = {"rule": "last", "epoch": result.train.num_train_epochs}
        return {"augmentation": self.augment_entry, "epoch_choice": choice}

    def save(self, trained, path: Path) -> ULDModel:
        """The artifact names its target by path (relative when a local folder) and hash; the saved
        model then folds its LoRA in for faster evaluation."""
        spec = self.ctx.cfg.model.model
        final = ULDModel.from_target(self.ctx.model, trained, self.params.weight, self.params.filter_factor,
                                     target_path=str(Path(spec).resolve()) if Path(spec).is_dir() else spec)
        final.save_pretrained(path, tokenizer=self.ctx.tokenizer)
        return final.merge_assistant()  # saved; from here on it only runs
