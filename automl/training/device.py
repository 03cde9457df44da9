"""Where and how a candidate trains: the device, mixed precision and memory layout.

Everywhere: channels_last tensors for the convolutions (oneDNN's fast layout on CPU: 1.6x the images/s
of the contiguous layout for the seed network on 2 cores). Training steps under bf16 autocast on a GPU
that supports it (fp16 with loss scaling otherwise) and on a CPU with bf16 instructions (AVX512-BF16 or
AMX; with channels_last 2.6-2.9x float32's images/s there, measured at 28 and 39 px); a CPU without them
would emulate bf16, slower than float32, so it trains in float32. Scoring (validation, test, the
inherited-accuracy check of a function-preserving morph) stays float32. On CUDA the data is copied to the
device once per candidate from pinned memory (non-blocking), and with several GPUs one candidate runs
per GPU (``slot`` picks it: parallel candidates have consecutive ids).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

from automl.errors import ConfigError

DATA_FRACTION = 0.25  # of free GPU memory the training data may take; beyond it batches are copied


@dataclass(frozen=True)
class Placement:
    device: torch.device
    amp_dtype: torch.dtype | None  # None: float32
    layout: torch.memory_format = torch.channels_last  # torch.contiguous_format: the plain one (benchmarks)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def scaler(self) -> torch.amp.GradScaler:
        """Loss scaling, needed for fp16 only (bf16 has float32's range)."""
        return torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

    def model(self, module: torch.nn.Module) -> torch.nn.Module:
        return module.to(self.device, memory_format=self.layout)

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        if self.cuda and x.device != self.device:
            x = x.pin_memory().to(self.device, non_blocking=True)
        return image_layout(x, self.layout)

    def dataset(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole training set on the device when it is a tensor that fits in a share of free memory
        (one copy per candidate instead of one per batch); otherwise unchanged (pixels read from their
        cache included), and batches are copied as they go."""
        if not self.cuda:
            return x, y
        free, _ = torch.cuda.mem_get_info(self.device)
        if not isinstance(x, torch.Tensor) or x.element_size() * x.numel() > DATA_FRACTION * free:
            return x, y.to(self.device)
        return (x.pin_memory().to(self.device, non_blocking=True), y.pin_memory().to(self.device, non_blocking=True))


def image_layout(x: torch.Tensor, layout: torch.memory_format = torch.channels_last) -> torch.Tensor:
    """A batch of images (N, C, H, W) in the layout the convolutions run fastest on; other tensors as they are."""
    return x.contiguous(memory_format=layout) if x.dim() == 4 else x


def place(device: str = "auto", amp: bool = True, slot: int = 0) -> Placement:
    """``device``: auto (CUDA when available), cpu, cuda or cuda:N; ``slot`` spreads candidates over GPUs."""
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return Placement(torch.device("cpu"), torch.bfloat16 if amp and cpu_has_bf16() else None)
    if not torch.cuda.is_available():
        raise ConfigError(f"train.device is {device!r} but CUDA is not available on this machine; "
                          "use train.device=auto or cpu")
    chosen = torch.device(device if ":" in device else f"cuda:{slot % torch.cuda.device_count()}")
    if not amp:
        return Placement(chosen, None)
    return Placement(chosen, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX tiles). torch reports it only
    through private helpers; a torch without them counts as "no", which trains in float32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


CPU_FRACTION = 0.25  # of physical memory, leaving room for data, other workers and the OS
GPU_FRACTION = 0.8  # of free device memory


def default_memory_limit_mb(device: str = "auto") -> float:
    """A share of the free memory of the GPU that ``device`` trains on, else of the machine's RAM.
    Asked by the driver on the machine that trains, and handed to the searcher."""
    if device != "cpu" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(None if device in ("auto", "cuda") else torch.device(device))
        return GPU_FRACTION * free / 2**20
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return CPU_FRACTION * pages / 2**20
