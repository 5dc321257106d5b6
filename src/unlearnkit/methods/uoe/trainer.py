"""UOE (Unlearning One Expert, for mixture-of-experts LLMs): unlearn by training a single expert.

The expert most tied to the forget data — highest affinity s(l, e) on forget tokens (docs/design.md §5) — and
its layer's router are the only trainable weights; everything else is frozen. Because the forget loss
could otherwise be lowered by routing forget tokens *away* from that expert, an anchor loss keeps them
routed to it: L = L_forget + λ L_retain + α A with A = mean ‖softmax(router(h)) − onehot(e*)‖².
Any forget/retain objective works; GA, GD, NPO and RMU are provided (uoe_ga, uoe_gd, uoe_npo, uoe_rmu).

transformers stores a layer's experts fused in one tensor, so the expert's slice is selected with a
gradient mask, and those tensors get no weight decay (decay would move every expert).
"""

from __future__ import annotations

import torch
from torch import nn

from unlearnkit.data.formatting import encode_qa, pad_batch
from unlearnkit.errors import UnlearnError
from unlearnkit.methods.ga import GATrainer
from unlearnkit.methods.gd import GDTrainer
from unlearnkit.methods.npo import NPOTrainer
from unlearnkit.methods.rmu import RMUTrainer, capture
from unlearnkit.models.moe import (
    ExpertRestriction,
    anchor_loss,
    expert_affinity,
    expert_ranking,
    get_layer,
    moe_layers,
    only_layers,
    restrict_to_expert,
    select_expert,
    selection_scores,
)
from unlearnkit.training.arguments import TrainArgs


def side_batches(dataset, side: str, batch_size: int, pad_token_id: int):
    """One side ("forget" or "retain") of a paired dataset, padded into batches (for affinity passes)."""
    if side == "retain":
        items = [encode_qa(dataset.tokenizer, r["question"], r["answer"], dataset.max_length)
                 for r in dataset.retain]
    else:
        items = [dataset[i]["forget"] for i in range(len(dataset))]
    for start in range(0, len(items), batch_size):
        yield pad_batch(items[start:start + batch_size], pad_token_id, "right")


class UOEMixin:
    """Turns a forget/retain trainer into its one-expert version (put it first in the bases).

    Params: expert_layer / expert (None = the best-scoring pair), selection ("affinity": the paper's
    highest forget affinity; "contrast": forget minus retain affinity, needs retain data),
    candidate_layers (None = all MoE layers), anchor_weight (α, 0 disables), router_lr_scale (router
    lr = scale × lr; 0 freezes the router), retain_anchor_weight (β: routes retain tokens as before
    but away from e*, see `retain_anchor`; 0 = the paper, off).
    """

    restriction: ExpertRestriction

    @classmethod
    def prepare_model(cls, model: nn.Module, params, settings: TrainArgs) -> nn.Module:
        """The target itself: UOE trains a slice of its weights, so LoRA does not apply."""
        if settings.lora:
            raise UnlearnError(f"{cls.name} trains one expert of the model directly: remove the lora setting")
        moe_layers(model)  # a dense model is a user error, raised here with a clear message
        return model

    @classmethod
    def needs_retain(cls, params) -> bool:
        """Contrast selection and the retain anchor need the retain data even when the loss does not."""
        return (super().needs_retain(params) or params.selection == "contrast"
                or float(params.retain_anchor_weight) > 0)

    @classmethod
    def build_dataset(cls, forget, retain, tokenizer, params, settings, counter, refusals=None,
                      augmentation=None):
        if params.selection == "contrast" and not retain:
            raise UnlearnError(f'{cls.name} with selection="contrast" needs retain examples to contrast '
                               'the forget affinity with: give a retain split or use selection="affinity"')
        if float(params.retain_anchor_weight) > 0 and not retain:
            raise UnlearnError(f"{cls.name} with retain_anchor_weight > 0 needs retain examples: give a "
                               "retain split or set retain_anchor_weight=0")
        return super().build_dataset(forget, retain, tokenizer, params, settings, counter, refusals,
                                     augmentation)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        model = self.model
        layers = [m.index for m in moe_layers(model)]
        selection = self.params.selection
        scale = float(self.params.router_lr_scale)
        pad = self.data_collator.pad_token_id
        size = self.args.per_device_train_batch_size
        self.affinity = expert_affinity(model, side_batches(self.train_dataset, "forget", size, pad))
        self.retain_affinity = None
        if selection == "contrast":
            retain = side_batches(self.train_dataset, "retain", size, pad)
            self.retain_affinity = expert_affinity(model, retain)
        scores = selection_scores(self.affinity, self.retain_affinity, selection)
        scores = only_layers(scores, layers, self.params.candidate_layers)
        layer, expert = self.params.expert_layer, self.params.expert
        if layer is None:
            layer, expert = select_expert(scores, layers)
        layer, expert = int(layer), int(expert)
        self.ranking = expert_ranking(scores, layers)
        self.restriction = restrict_to_expert(model, layer, expert, train_router=scale > 0)
        self.expert_layer, self.expert = layer, expert
        self.router_lr_scale = scale
        self._anchor: torch.Tensor | None = None
        # The router as it was: the retain anchor keeps retain tokens' routing at this layer unchanged.
        self._router_start = get_layer(model, layer).router.weight.detach().clone()

    def create_optimizer(self, model=None):
        """The Trainer's optimizer, with the router in its own group at lr × router_lr_scale."""
        optimizer = super().create_optimizer(model)
        if self.router_lr_scale in (0.0, 1.0):
            return optimizer
        router = get_layer(self.accelerator.unwrap_model(self.model), self.expert_layer).router.weight
        for group in list(optimizer.param_groups):
            if any(p is router for p in group["params"]):
                group["params"] = [p for p in group["params"] if p is not router]
                optimizer.add_param_group({"params": [router], "weight_decay": group["weight_decay"],
                                           "lr": group["lr"] * self.router_lr_scale})
        return optimizer

    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        """No weight decay on fused expert tensors: it would shrink the frozen experts too."""
        masked = set(self.restriction.masked_names)
        return [n for n in super().get_decay_parameter_names(model) if n not in masked]

    def forget_loss(self, model, inputs):
        """The base method's forget loss, recording layer l*'s router logits on the forget batch."""
        router = get_layer(self.accelerator.unwrap_model(model), self.expert_layer).router
        captured: list[torch.Tensor] = []

        def hook(module, args, output):
            if not captured:  # the trained model's forward on the forget batch comes first
                captured.append(output[0] if isinstance(output, tuple) else output)

        handle = router.register_forward_hook(hook)
        try:
            loss, terms = super().forget_loss(model, inputs)
        finally:
            handle.remove()
        if not captured:
            raise UnlearnError(f"{self.name}: the router of layer {self.expert_layer} did not run on the "
                               "forget batch (is the forward stopping before it?)")
        self._anchor = anchor_loss(captured[0], self.expert, inputs["forget"]["attention_mask"])
        return loss, terms

    def retain_anchor(self, model, batch: dict) -> torch.Tensor:
        """R = mean over retain tokens of ‖softmax(W h) − q‖² at layer l*, q = softmax(W₀ h) with e*'s
        share removed and renormalised (W₀: the router before unlearning): retain tokens keep their
        routing but leave the expert being unlearned. Everything below the router is frozen, so h is
        the original model's, and the forward stops at the router."""
        router = get_layer(self.accelerator.unwrap_model(model), self.expert_layer).router
        hidden = capture(model, router, batch, what="input")
        hidden = hidden.reshape(-1, hidden.shape[-1]).float()  # routers are linear: logits = h Wᵀ
        now = torch.softmax(hidden @ router.weight.float().T, dim=-1)
        target = torch.softmax(hidden @ self._router_start.to(hidden.device).float().T, dim=-1)
        target[:, self.expert] = 0  # the routing as it was, but never to e*
        target = target / target.sum(-1, keepdim=True).clamp(min=1e-12)
        per_token = ((now - target) ** 2).sum(-1)
        mask = batch["attention_mask"].reshape(-1).to(per_token.dtype)
        return (per_token * mask).sum() / mask.sum().clamp(min=1)

    def loss_terms(self, model, inputs):
        """The base terms plus α · anchor (plus β · retain anchor when retain_anchor_weight > 0)."""
        terms = super().loss_terms(model, inputs)
        weight = float(self.params.anchor_weight)
        terms["anchor_loss"] = self._anchor
        if weight:
            terms["loss"] = terms["loss"] + weight * self._anchor
        retain_weight = float(self.params.retain_anchor_weight)
        if retain_weight and self.router_lr_scale > 0:
            terms["retain_anchor_loss"] = self.retain_anchor(model, inputs["retain"])
            terms["loss"] = terms["loss"] + retain_weight * terms["retain_anchor_loss"]
        return terms

    def extra_record(self) -> dict:
        """What to store with the result: the chosen expert, the trainable share, the top of the ranking."""
        r = self.restriction
        return {**super().extra_record(), "expert_layer": r.layer, "expert": r.expert,
                "trainable_params": r.trainable_params, "total_params": r.total_params,
                "trainable_share": r.share, "selection": self.params.selection,
                "router_lr_scale": self.router_lr_scale,
                "affinity_top": [list(x) for x in self.ranking[:5]]}


class UOEGATrainer(UOEMixin, GATrainer):
    name = "uoe_ga"


class UOEGDTrainer(UOEMixin, GDTrainer):
    name = "uoe_gd"


class UOENPOTrainer(UOEMixin, NPOTrainer):
    name = "uoe_npo"


class UOERMUTrainer(UOEMixin, RMUTrainer):
    """RMU steered at the output of the expert's layer; only the expert (and router) train."""

    name = "uoe_rmu"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.layer_index = self.expert_layer
        self.update_layers = [self.expert_layer]
