"""Where a model runs: one policy for eval, generate, bench and serve (CUDA, then MPS, else CPU).

`--device` and `--dtype fp32|bf16|fp16` override it; the resolved choice is recorded with the outputs.
Default dtype: bf16 on a CUDA device that supports it (what open-unlearning evaluates in), else fp32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from unlearnkit.errors import UnlearnError

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions: the CLI imports this module for its help strings.
DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
# the loader's spelling (models.loading.DTYPES) of each short name
LOADER_DTYPE = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
DEVICE_HELP = "Device: cuda, cuda:N, mps or cpu (default: CUDA, then MPS, else CPU)."
DTYPE_HELP = "Weights dtype: fp32, bf16 or fp16 (default: bf16 on CUDA with bf16 support, else fp32)."


def _mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def pick_device(device: str | None = None) -> torch.device:
    """The requested device, checked to exist; None/'auto' picks CUDA, then MPS, else CPU."""
    import torch

    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UnlearnError(f"unknown device {device!r}: use cuda, cuda:N, mps or cpu") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UnlearnError(f"--device {device}: no CUDA device is available here: use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UnlearnError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif dev.type == "mps" and not _mps_available():
        raise UnlearnError(f"--device {device}: MPS is not available here: use --device cpu")
    elif dev.type not in ("cuda", "mps", "cpu"):
        raise UnlearnError(f"unsupported device {device!r}: use cuda, cuda:N, mps or cpu")
    return dev


def pick_dtype(dtype: str | None, device: torch.device) -> str:
    """Short dtype name: the requested one, or bf16 on bf16-capable CUDA, else fp32."""
    import torch

    if dtype is not None:
        if dtype not in DTYPE_NAMES:
            raise UnlearnError(f"unknown --dtype {dtype!r}: choose one of {', '.join(DTYPE_NAMES)}")
        if dtype == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise UnlearnError("--dtype bf16: this CUDA device has no bf16 support: use fp16 or fp32")
        return dtype
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


@dataclass(frozen=True)
class Placement:
    """A resolved (device, dtype) choice; `apply` moves a model there, `record` is what we log."""

    device: torch.device
    dtype: str

    @classmethod
    def resolve(cls, device: str | None = None, dtype: str | None = None) -> Placement:
        dev = pick_device(device)
        return cls(dev, pick_dtype(dtype, dev))

    @property
    def torch_dtype(self) -> torch.dtype:
        import torch

        return getattr(torch, DTYPE_NAMES[self.dtype])

    @property
    def loader_dtype(self) -> str:
        """The dtype name models.loading expects, so weights load directly in it."""
        return LOADER_DTYPE[self.dtype]

    def apply(self, model):
        """Cast and move in place (shared ULD weights stay shared: Module.to keeps Parameter objects)."""
        return model.to(device=self.device, dtype=self.torch_dtype)

    def record(self) -> dict:
        import torch

        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None
        return {"device": str(self.device), "dtype": self.dtype,
                **({"device_name": name} if name else {})}
