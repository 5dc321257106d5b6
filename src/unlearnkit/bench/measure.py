"""What the bench measures inside a worker: machine context, tokens per epoch and timed greedy generation
(definitions in the package docstring; memory and time per epoch: unlearnkit.costs)."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path


def machine_info() -> dict:
    """CPU model, cores, load and library versions: the context every figure needs."""
    from unlearnkit.outputs import provenance

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    prov = provenance(0)
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": affinity,
            "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "platform": platform.platform(), "cuda": prov["machine"]["cuda"], "versions": prov["versions"]}


def epoch_tokens(dataset) -> int:
    """Non-padding tokens of one pass over a paired dataset ({"forget": enc, "retain": enc, ...} items)."""
    total = 0
    for i in range(len(dataset)):
        item = dataset[i]
        parts = item.values() if isinstance(item, dict) and "input_ids" not in item else [item]
        total += sum(len(p["input_ids"]) for p in parts if isinstance(p, dict) and "input_ids" in p)
    return total


def train_meter():
    """A TrainerCallback recording tokens per epoch (transformers loads lazily)."""
    from transformers import TrainerCallback

    class TrainMeter(TrainerCallback):
        """Tokens of each epoch, read after the epoch, so its timing is untouched."""

        def __init__(self):
            self.tokens: list[int] = []

        def on_epoch_end(self, args, state, control, train_dataloader=None, **kwargs):
            dataset = getattr(train_dataloader, "dataset", None)
            if dataset is not None:
                self.tokens.append(epoch_tokens(dataset))

    return TrainMeter()


def generate_tokens(model, tok, prompts: list[list[int]], batch_size: int,
                    new_tokens: int) -> tuple[int, float]:
    """(new tokens generated, seconds) for greedy generation of exactly `new_tokens` per prompt."""
    import torch

    from unlearnkit.data.formatting import pad_batch

    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    count, start = 0, time.perf_counter()
    for i in range(0, len(prompts), batch_size):
        feats = [{"input_ids": p, "attention_mask": [1] * len(p)} for p in prompts[i:i + batch_size]]
        batch = {k: v.to(model.device) for k, v in pad_batch(feats, pad_id, "left").items()}
        with torch.inference_mode():
            out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                 max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                 pad_token_id=pad_id, eos_token_id=tok.eos_token_id)
        count += (out.shape[1] - batch["input_ids"].shape[1]) * out.shape[0]
    return count, time.perf_counter() - start
