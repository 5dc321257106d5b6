"""Routing diagnostics for UOE: expert affinity tables and heat maps, routing overlap before/after
unlearning, and the target expert's affinity and rank over training.

Overlap answers "did unlearning change which experts a token goes to?": for each real token and MoE
layer, |top-k before ∩ top-k after| / k, averaged. On forget tokens the anchor loss is meant to keep it
high at the target layer; on retain tokens it shows how far the unlearning leaked into routing.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from transformers import TrainerCallback

from unlearnkit.data.formatting import encode_qa, pad_batch
from unlearnkit.errors import UnlearnError
from unlearnkit.models.moe import (
    expert_affinity,
    expert_ranking,
    moe_layers,
    router_passes,
    select_expert,
    selection_scores,
)
from unlearnkit.outputs import save_figure, write_json


def encode_records(tokenizer, records: list[dict], max_length: int = 256) -> list[dict]:
    """QA records ({question, answer}) via encode_qa, plain text records ({text}) tokenized as is."""
    feats = []
    for i, r in enumerate(records):
        if "question" in r and "answer" in r:
            feats.append(encode_qa(tokenizer, r["question"], r["answer"], max_length))
        elif "text" in r:
            ids = tokenizer(r["text"], truncation=True, max_length=max_length)["input_ids"]
            feats.append({"input_ids": ids, "attention_mask": [1] * len(ids)})
        else:
            raise UnlearnError(f"record {i} has neither question/answer nor text fields")
    if not feats:
        raise UnlearnError("no records to route: the data file is empty")
    return feats


def make_batches(tokenizer, records: list[dict], batch_size: int = 16, max_length: int = 256) -> list[dict]:
    """Right-padded batches of input_ids/attention_mask (labels dropped: routing needs none)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    feats = [{k: f[k] for k in ("input_ids", "attention_mask")} for f in encode_records(tokenizer, records,
                                                                                         max_length)]
    return [pad_batch(feats[i:i + batch_size], pad, "right") for i in range(0, len(feats), batch_size)]


def affinity_report(model, batches: Iterable[dict], top: int = 10,
                    retain_batches: Iterable[dict] | None = None, selection: str = "affinity") -> dict:
    """Affinity matrix (MoE layer x routed expert) on forget tokens, layer indices, and the ranking by
    the selection score (forget affinity, or forget minus retain affinity for "contrast").

    With retain batches the retain affinity is reported too, so a generic expert (high on both) shows.
    """
    layers = [m.index for m in moe_layers(model)]
    aff = expert_affinity(model, batches)
    retain = expert_affinity(model, retain_batches) if retain_batches is not None else None
    scores = selection_scores(aff, retain, selection)
    ranking = expert_ranking(scores, layers)
    rows = []
    for lay, e, score in ranking[:top]:
        row = {"layer": lay, "expert": e, "affinity": float(aff[layers.index(lay), e]), "score": score}
        if retain is not None:
            row["retain_affinity"] = float(retain[layers.index(lay), e])
        rows.append(row)
    report = {"layers": layers, "affinity": aff.tolist(), "top_k": moe_layers(model)[0].top_k,
              "selection": selection, "ranking": rows,
              "selected": {"layer": ranking[0][0], "expert": ranking[0][1]}}
    if retain is not None:
        report["retain_affinity"] = retain.tolist()
    return report


def expert_rank(affinity: torch.Tensor, layers: list[int], layer: int, expert: int) -> int:
    """1-based rank of (layer, expert) among all routed experts by affinity."""
    value = affinity[layers.index(layer), expert]
    return int((affinity > value).sum()) + 1


def routing_sets(model, batches: Iterable[dict]) -> dict[int, torch.Tensor]:
    """Per MoE layer, the top-k expert indices (real tokens only, (N, k), sorted)."""
    layers = moe_layers(model)
    out: dict[int, list[torch.Tensor]] = {m.index: [] for m in layers}
    for logits, mask in router_passes(model, batches):
        keep = mask.reshape(-1).bool()
        for m in layers:
            top = logits[m.index].float().topk(m.top_k, dim=-1).indices
            out[m.index].append(top[keep].sort(-1).values.cpu())
    return {k: torch.cat(v) for k, v in out.items()}


def set_overlap(before: torch.Tensor, after: torch.Tensor) -> float:
    """Mean over tokens of |S_before ∩ S_after| / k for (N, k) index sets."""
    if before.shape != after.shape:
        raise ValueError(f"routing sets differ in shape: {tuple(before.shape)} vs {tuple(after.shape)}")
    hits = (before.unsqueeze(-1) == after.unsqueeze(-2)).any(-1).float()
    return float(hits.mean())


def routing_overlap(before: dict[int, torch.Tensor], after: dict[int, torch.Tensor]) -> dict:
    """Overlap per layer and its mean, from two `routing_sets` results on the same tokens."""
    per = {layer: set_overlap(before[layer], after[layer]) for layer in before}
    return {"per_layer": per, "mean": sum(per.values()) / len(per)}


def expert_share(sets: dict[int, torch.Tensor], layer: int, expert: int) -> float:
    """Fraction of tokens whose top-k at `layer` contains `expert`."""
    return float((sets[layer] == expert).any(-1).float().mean())


class AffinityTracker(TrainerCallback):
    """Recomputes the affinity matrix on fixed forget batches at each logging step (and at start)."""

    def __init__(self, batches: list[dict]):
        self.batches = batches
        self.history: list[dict] = []

    def _record(self, step: int, model) -> None:
        aff = expert_affinity(model, self.batches)
        self.history.append({"step": step, "affinity": aff.tolist()})

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._record(0, model)

    def on_log(self, args, state, control, model=None, **kwargs):
        if not self.history or self.history[-1]["step"] != state.global_step:
            self._record(state.global_step, model)

    def trace(self, layers: list[int], layer: int, expert: int) -> list[dict]:
        """(step, affinity, rank) of one expert over training."""
        rows = []
        for h in self.history:
            aff = torch.tensor(h["affinity"])
            rows.append({"step": h["step"], "affinity": float(aff[layers.index(layer), expert]),
                         "rank": expert_rank(aff, layers, layer, expert)})
        return rows


class RoutingMonitor(AffinityTracker):
    """What unlearning did to an MoE's routing, for `unlearn run` (diagnostics/ROUTING.json): top-k sets
    on fixed forget and retain batches before training (taken at construction, so a resumed run still
    compares with the original model), the forget affinity per logging step, and `report()` after."""

    def __init__(self, model, forget_batches: list[dict], retain_batches: list[dict]):
        super().__init__(forget_batches)
        self.retain_batches = retain_batches
        self.layers = [m.index for m in moe_layers(model)]
        self.before = self._sets(model)
        self._record(0, model)

    def _sets(self, model) -> dict[str, dict[int, torch.Tensor]]:
        return {part: routing_sets(model, batches)
                for part, batches in (("forget", self.batches), ("retain", self.retain_batches))}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        """The step-0 affinity was taken at construction (before any checkpoint was loaded)."""

    def report(self, model, step: int, watched: tuple[int, int] | None = None) -> dict:
        """Overlap before/after on forget and retain tokens, and the watched expert's share of tokens
        (before -> after) and affinity/rank per step up to the final `step`; default watch: the expert
        with the highest forget affinity before training."""
        if self.history[-1]["step"] != step:
            self._record(step, model)
        if watched is None:
            watched = select_expert(torch.tensor(self.history[0]["affinity"]), self.layers)
        layer, expert = watched
        after = self._sets(model)
        return {
            "layers": self.layers, "watched": {"layer": layer, "expert": expert},
            "overlap": {part: routing_overlap(self.before[part], after[part]) for part in after},
            "expert_share": {part: {"before": expert_share(self.before[part], layer, expert),
                                    "after": expert_share(after[part], layer, expert)} for part in after},
            "trace": self.trace(self.layers, layer, expert),
            "affinity_before": self.history[0]["affinity"], "affinity_after": self.history[-1]["affinity"],
        }


# ---------------------------------------------------------------- output

def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, path, dpi=120, bbox_inches="tight")


def plot_affinity(affinity, layers: list[int], path: Path, title: str = "expert affinity on forget tokens",
                  highlight: tuple[int, int] | None = None) -> Path:
    """Heat map (MoE layer x routed expert); the selected expert is boxed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    aff = torch.as_tensor(affinity).float().numpy()
    fig, ax = plt.subplots(figsize=(0.5 * aff.shape[1] + 2, 0.45 * aff.shape[0] + 1.5))
    im = ax.imshow(aff, cmap="viridis", aspect="auto")
    ax.set_xticks(range(aff.shape[1]))
    ax.set_yticks(range(len(layers)), [str(i) for i in layers])
    ax.set_xlabel("routed expert")
    ax.set_ylabel("layer")
    ax.set_title(title)
    if highlight is not None:
        r, c = layers.index(highlight[0]), highlight[1]
        ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    fig.colorbar(im, ax=ax, label="s(l, e)")
    out = _save(fig, path)
    plt.close(fig)
    return out


def plot_tracking(traces: dict[str, list[dict]], path: Path,
                  title: str = "target expert over training") -> Path:
    """Affinity (left) and rank (right) of the target expert per logging step, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
    for label, rows in traces.items():
        steps = [r["step"] for r in rows]
        a1.plot(steps, [r["affinity"] for r in rows], marker="o", label=label)
        a2.plot(steps, [r["rank"] for r in rows], marker="o", label=label)
    a1.set_xlabel("step")
    a1.set_ylabel("affinity s(l*, e*)")
    a2.set_xlabel("step")
    a2.set_ylabel("rank (1 = highest)")
    a2.yaxis.set_major_locator(MaxNLocator(integer=True))
    a2.invert_yaxis()
    a1.legend()
    fig.suptitle(title)
    out = _save(fig, path)
    plt.close(fig)
    return out


def write_routing(out_dir: Path, report: dict) -> None:
    """ROUTING.json (a RoutingMonitor report), affinity before/after heat maps and the watched expert's
    affinity/rank over training."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "ROUTING.json", report)
    watched = (report["watched"]["layer"], report["watched"]["expert"])
    for when in ("before", "after"):
        plot_affinity(report[f"affinity_{when}"], report["layers"], out_dir / f"affinity_{when}.png",
                      f"expert affinity on forget tokens, {when} unlearning", highlight=watched)
    plot_tracking({"L{} E{}".format(*watched): report["trace"]}, out_dir / "expert_tracking.png")


def ranking_markdown(report: dict) -> str:
    retain = "retain_affinity" in report["ranking"][0]
    lines = ["| rank | layer | expert | affinity |" + (" retain affinity | score |" if retain else ""),
             "|---:|---:|---:|---:|" + ("---:|---:|" if retain else "")]
    for i, r in enumerate(report["ranking"], 1):
        extra = f" {r['retain_affinity']:.4f} | {r['score']:.4f} |" if retain else ""
        lines.append(f"| {i} | {r['layer']} | {r['expert']} | {r['affinity']:.4f} |" + extra)
    return "\n".join(lines)
