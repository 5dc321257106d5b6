"""ULD's epoch choice on a held-out validation set (select_best_epoch): after each epoch, score forget
quality of the ULD model on the validation rows and keep the best adapter. Never the reported forget
split (that would pick the epoch by the test).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from transformers import TrainerCallback

from unlearnkit.errors import UnlearnError
from unlearnkit.outputs import write_json

BEST_STATE = "best_epoch.json"  # in a checkpoint: BestEpoch's history
BEST_ADAPTER = "best_adapter.safetensors"  # in a checkpoint: BestEpoch's best adapter so far


class BestEpoch(TrainerCallback):
    """Keeps the adapter of the epoch with the best validation forget quality.

    `wrap(assistant)` builds the model to score (target - w * assistant), `score(model)` its forget
    truth-ratio scores on the validation rows (two scoring passes), and `reference` the retain model's
    scores on the same rows; forget quality is the KS-test p-value between the two.
    """

    def __init__(self, wrap: Callable, score: Callable[..., list[float]], reference: list[float]):
        self.wrap, self.score, self.reference = wrap, score, reference
        self.history: list[dict] = []
        self.best: tuple[float, int, dict] | None = None

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        from peft import get_peft_model_state_dict
        from scipy.stats import ks_2samp

        uld = self.wrap(model)
        was_training = model.training
        model.eval()
        fq = float(ks_2samp(self.score(uld), self.reference).pvalue)
        model.train(was_training)
        epoch = round(state.epoch)
        self.history.append({"epoch": epoch, "validation_forget_quality": fq})
        if self.best is None or fq >= self.best[0]:  # ties: the later, longer-trained epoch
            state_dict = {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}
            self.best = (fq, epoch, state_dict)

    def on_save(self, args, state, control, **kwargs):
        """Into the checkpoint: the epoch history and the best adapter, so a resumed run picks the same."""
        if not state.is_world_process_zero:
            return
        from safetensors.torch import save_file

        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if self.best is not None:
            save_file({k: v.contiguous() for k, v in self.best[2].items()}, folder / BEST_ADAPTER)
        write_json(folder / BEST_STATE, {"history": self.history,
                                         "best": list(self.best[:2]) if self.best else None})

    def load(self, checkpoint: Path) -> None:
        """Restore the state `on_save` wrote into a checkpoint (when resuming from it)."""
        from safetensors.torch import load_file

        path = Path(checkpoint) / BEST_STATE
        if not path.is_file():
            raise UnlearnError(f"checkpoint {checkpoint} has no {BEST_STATE}: it was not written by a ULD "
                               "run with per-epoch selection; rerun without --resume")
        saved = json.loads(path.read_text())
        self.history = saved["history"]
        if saved["best"] is not None:
            fq, epoch = saved["best"]
            self.best = (fq, epoch, load_file(Path(checkpoint) / BEST_ADAPTER))

    def restore(self, model) -> int | None:
        """Load the best epoch's adapter into `model`; returns that epoch."""
        if self.best is None:
            return None
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, self.best[2])
        return self.best[1]
