"""RMU (Li et al. 2024, WMDP): scramble forget activations at one layer, keep retain activations.

At layer l, forget activations are pushed toward c·u (u a fixed random unit vector) and retain
activations are held at the frozen model's (MSE), updating only the MLP down-projections of layers
l-2..l. WMDP used layer 7 of 32 (Zephyr-7B); our default is the same relative depth, round(7N/32).
The steering coefficient c depends on the model's activation scale (WMDP: 6.5 for Zephyr, 300 for
Mixtral), so by default it is `steering_scale` times the frozen model's mean activation norm at l on
the first forget batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from unlearnkit.errors import UnlearnError
from unlearnkit.methods.base import TOFU_TRAIN, LossParams, UnlearnTrainer, is_peft, wrap_lora
from unlearnkit.methods.params import param
from unlearnkit.methods.registry import Method, register
from unlearnkit.models.layers import decoder_layers
from unlearnkit.training.arguments import TrainArgs


def activation_mse(act: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per sample: mean over masked tokens of the mean squared difference over hidden dims; batch mean.

    Same reduction as open-unlearning's RMU (answer tokens only).
    """
    sq = (act.float() - target.float()).pow(2).mean(-1)
    mask = mask.to(sq.dtype)
    return ((sq * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()


def rmu_loss(forget_act, control, forget_mask, retain_act, retain_ref_act, retain_mask,
             alpha: float = 1000.0, gamma: float = 1.0) -> torch.Tensor:
    """gamma · MSE(forget activations, c·u) + alpha · MSE(retain activations, frozen retain activations)."""
    forget = activation_mse(forget_act, control.expand_as(forget_act), forget_mask)
    return gamma * forget + alpha * activation_mse(retain_act, retain_ref_act, retain_mask)


def control_vector(dim: int, coeff: float, seed: int = 0) -> torch.Tensor:
    """c·u with u = uniform[0,1) noise normalised to unit length (as WMDP), fixed by the seed."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(dim, generator=g)
    return coeff * u / u.norm()


def default_layer(n_layers: int) -> int:
    """WMDP's layer 7 of 32 at the same relative depth, kept below the last layer."""
    return min(max(0, round(7 * n_layers / 32)), max(0, n_layers - 2))


def resolve_layers(n_layers: int, params: RMUParams) -> tuple[int, list[int]]:
    """(steered layer, updated layers) from params, validated against the model's depth."""
    layer = params.layer
    layer = default_layer(n_layers) if layer is None else int(layer)
    if not 0 <= layer < n_layers:
        raise UnlearnError(f"rmu layer={layer} is out of range: the model has {n_layers} layers (0-indexed)")
    update = params.update_layers
    update = [i for i in (layer - 2, layer - 1, layer) if i >= 0] if update is None else list(update)
    bad = [i for i in update if not 0 <= int(i) < n_layers]
    if bad or not update:
        raise UnlearnError(f"rmu update_layers={update} must be non-empty layer indices in 0..{n_layers - 1}")
    return layer, [int(i) for i in update]


class _Stop(Exception):
    """Raised by the capture hook: nothing after the captured module is needed."""


def capture(model: nn.Module, module: nn.Module, batch: dict[str, torch.Tensor],
            what: str = "output") -> torch.Tensor:
    """The output (or with what="input" the first input) of `module` for a batch; the forward stops there."""
    captured = []

    def output_hook(mod, args, output):
        captured.append(output[0] if isinstance(output, tuple) else output)
        raise _Stop

    def input_hook(mod, args):
        captured.append(args[0])
        raise _Stop

    handle = (module.register_forward_pre_hook(input_hook) if what == "input"
              else module.register_forward_hook(output_hook))
    try:
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    except _Stop:
        pass
    finally:
        handle.remove()
    return captured[0]


def layer_activations(model: nn.Module, layer: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Output hidden states of `layer` for a batch; the forward stops right after that layer."""
    return capture(model, layer, batch)


@dataclass
class RMUParams(LossParams):
    """WMDP's RMU as in open-unlearning: alpha 1000 on the retain activations, gamma 1."""

    layer: int | None = param(None, "steered layer (null: round(7N/32), WMDP's layer 7 of 32)")
    update_layers: list[int] | None = param(None, "layers whose mlp.down_proj trains (null: layer-2..layer)")
    steering_coeff: float | None = param(None, "c (null: steering_scale x the frozen model's mean "
                                               "activation norm at the layer on the first forget batch)")
    steering_scale: float = param(4.0, "multiple of the activation norm used when steering_coeff is null")
    gamma: float = param(1.0, "weight of the forget (steering) MSE")
    alpha: float = param(1000.0, "weight of the retain activation MSE")
    retain_loss: str = param("embed", "retain term: embed (activations held at the frozen model's)")


class RMUTrainer(UnlearnTrainer):
    name = "rmu"
    needs_reference = True

    @classmethod
    def retain_losses(cls) -> tuple[str, ...]:
        return ("embed",)

    @classmethod
    def needs_retain(cls, params) -> bool:
        return True

    @classmethod
    def prepare_model(cls, model, params, settings: TrainArgs):
        """Only layers[i].mlp.down_proj of the updated layers train (or carry LoRA)."""
        layers = decoder_layers(model)
        _, update = resolve_layers(len(layers), params)
        names = {id(m): n for n, m in model.named_modules()}
        targets = [names[id(layers[i].mlp.down_proj)] for i in update]
        if settings.lora:
            return wrap_lora(model, settings.lora, settings.seed, target_modules=targets)
        for p in model.parameters():
            p.requires_grad_(False)
        for name in targets:
            model.get_submodule(name).weight.requires_grad_(True)
        return model

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        base = self.model.get_base_model() if is_peft(self.model) else self.model
        self.layer_index, self.update_layers = resolve_layers(len(decoder_layers(base)), self.params)
        self.steering_coeff = self.params.steering_coeff
        self.control_vec = None

    def _layer(self, model: nn.Module) -> nn.Module:
        model = self.accelerator.unwrap_model(model)
        base = model.get_base_model() if is_peft(model) else model
        return decoder_layers(base)[self.layer_index]

    @torch.no_grad()
    def reference_activations(self, model: nn.Module, batch) -> torch.Tensor:
        if self.ref_model is not None:
            return layer_activations(self.ref_model, self._layer(self.ref_model), batch)
        unwrapped = self.accelerator.unwrap_model(model)
        was_training = unwrapped.training
        unwrapped.eval()
        try:
            with unwrapped.disable_adapter():
                return layer_activations(unwrapped, self._layer(unwrapped), batch)
        finally:
            unwrapped.train(was_training)

    def _control(self, model, batch, act: torch.Tensor) -> torch.Tensor:
        if self.control_vec is None:
            if self.steering_coeff is None:  # auto: a multiple of the frozen model's activation norm
                ref = self.reference_activations(model, batch).float()
                mask = batch["labels"] != -100
                norm = ref.norm(dim=-1)[mask].mean()
                self.steering_coeff = float(self.params.steering_scale * norm)
            self.control_vec = control_vector(act.shape[-1], float(self.steering_coeff), self.args.seed)
        return self.control_vec.to(device=act.device, dtype=torch.float32)

    def forget_loss(self, model, inputs):
        batch = inputs["forget"]
        act = layer_activations(model, self._layer(model), batch)
        control = self._control(model, batch, act)
        loss = activation_mse(act, control.expand_as(act), batch["labels"] != -100)
        return loss, {"forget_act_norm": act.detach().float().norm(dim=-1).mean()}

    def retain_loss(self, model, inputs):
        batch = inputs["retain"]
        act = layer_activations(model, self._layer(model), batch)
        ref = self.reference_activations(model, batch)
        return activation_mse(act, ref, batch["labels"] != -100), {}

    def extra_record(self) -> dict:
        return {**super().extra_record(), "steering_coeff": self.steering_coeff}


register(Method("rmu", RMUTrainer, RMUParams, train={**TOFU_TRAIN, "lr": 5e-5},
                description="representation misdirection (WMDP)"))
