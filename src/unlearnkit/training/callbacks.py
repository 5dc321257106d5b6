"""Trainer callbacks every unlearning run uses: epoch timing, the paired dataset's epoch, per-epoch
saves and the checkpoint-complete marker.

Callbacks that evaluate a model (eval.mcq.ForgetAccuracyStop, eval.moe.RoutingMonitor) live with the
evaluation they run: training/ sits below eval/ and never imports it.
"""

from __future__ import annotations

import time
from pathlib import Path

from transformers import TrainerCallback

from unlearnkit.outputs import write_json
from unlearnkit.training.checkpoints import CHECKPOINT_MARKER, save_model_atomic


class EpochTimer(TrainerCallback):
    """Wall time of each epoch (seconds), for the benchmark's time/epoch."""

    def __init__(self):
        self.seconds: list[float] = []
        self._start = None

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kwargs):
        if self._start is not None:
            self.seconds.append(time.perf_counter() - self._start)


class DatasetEpoch(TrainerCallback):
    """Tells a ForgetRetainDataset the epoch (its retain pairing shifts each epoch).

    accelerate calls dataset.set_epoch itself with one process but not when it shards batches across
    several, which would pair different retain examples there; setting it here keeps them identical.
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(int((state.epoch or 0) + 1e-6))  # epoch k begins at state.epoch == k


class EpochSaver(TrainerCallback):
    """Saves the model (a LoRA adapter is megabytes) to out_dir/epoch-N after each epoch."""

    def __init__(self, out_dir):
        self.out_dir = out_dir

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        save_model_atomic(model, Path(self.out_dir) / f"epoch-{round(state.epoch)}")


class CheckpointMarker(TrainerCallback):
    """Marks a Trainer checkpoint complete, after every other callback's on_save has written into it.

    The Trainer writes checkpoint-N file by file; a run killed mid-save leaves a folder that must not
    be resumed from. `find_checkpoint` only accepts folders holding this marker. Add it last.
    """

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            write_json(folder / CHECKPOINT_MARKER, {"global_step": state.global_step,
                                                    "epoch": state.epoch})
