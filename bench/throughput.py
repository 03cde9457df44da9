"""Trainer throughput against a bare PyTorch loop: same model, same in-memory data, batch size and
threads, measured in the same process, alternating.

    python -m bench.throughput [--epochs 2] [--repeats 3]

The bare loop is the least a training loop can do: shuffle, slice, forward, cross-entropy, backward,
Adam step, with the data on the device (CUDA when present), in the trainer's placement (channels_last,
bf16 autocast where the device computes bf16: ``automl.training.device``). The trainer does all that
plus what a search needs: batched augmentation, the learning-rate schedule, a validation pass and a
best-state copy per epoch, the deadline and divergence checks. Its images/s counts training images over
its whole wall time, validation included. Target: >= 0.9x. What the placement itself gains is the bare
loop in it against the same loop in float32 and the contiguous layout (``placement_speedup``).

It also reports how much of the machine the trainer uses: its training FLOP/s (torch's FLOP counter
over one forward and backward pass of the seed network, times the trainer's images/s) against the
best matmul rate in the trainer's precision measured in the same process (``trainer_flops_fraction``; informative, no
target: small convolutions on 2 cores do not reach a large matmul's rate).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from automl.arch.builder import build_module
from automl.arch.graph import initial_graph
from automl.config import TrainConfig
from automl.training.device import Placement, place
from automl.training.protocol import resolve
from automl.training.trainer import TensorData, set_threads, train_candidate
from bench.common import RESULTS, alternate, tensor_data, timed

TARGET = 0.9


def bare_loop(model: torch.nn.Module, data: TensorData, batch_size: int, epochs: int, placement: Placement) -> None:
    """Plain training with the data already on the device, in ``placement``'s layout and precision."""
    torch.manual_seed(0)
    device = placement.device
    model = placement.model(model)
    x, y = data.x_train.to(device), data.y_train.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), device=device)
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            with placement.autocast():
                loss = F.cross_entropy(model(placement.batch(x[idx])), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_flops_per_image(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """FLOPs of one training step (forward, cross-entropy, backward) per image of the batch ``x``."""
    model.train()
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(x)


def matmul_peak(device: torch.device, n: int = 1024, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """The best FLOP/s of an ``n`` x ``n`` matmul in ``dtype`` on ``device``: the machine's practical peak."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    best = 0.0
    for _ in range(repeats + 1):  # the first warms up
        start = time.perf_counter()
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = max(best, 2 * n**3 / (time.perf_counter() - start))
    return best


def measure(dataset: str = "mnist5k", image_size: int = 28, epochs: int = 2, repeats: int = 3) -> dict:
    """Images/s of the bare loop and of ``train_candidate`` on the seed's initial network."""
    data, n_classes = tensor_data(dataset, image_size)
    graph = initial_graph(tuple(data.x_train.shape[1:]), n_classes)
    config = resolve(TrainConfig(max_epochs=epochs, patience=epochs), len(data.x_train))  # the run's batch size
    set_threads(config.threads)
    placement = place(config.device, config.amp)
    device, plain = placement.device, Placement(placement.device, None, torch.contiguous_format)
    images = epochs * len(data.x_train)

    def bare(where: Placement = placement) -> float:
        return images / timed(lambda: bare_loop(build_module(graph), data, config.batch_size, epochs, where))

    def trainer() -> float:
        result = train_candidate(graph, None, data, config, seed=0)
        assert not result.failed, result.error
        return images / result.train_seconds

    bare_ips, trainer_ips = alternate(bare, trainer, repeats)
    plain_ips, placed_ips = alternate(lambda: bare(plain), bare, repeats)
    batch = slice(0, config.batch_size)
    flops = training_flops_per_image(build_module(graph).to(device), data.x_train[batch].to(device),
                                     data.y_train[batch].to(device))
    peak = matmul_peak(device, dtype=placement.amp_dtype or torch.float32)
    return {"dataset": dataset, "image_size": image_size, "epochs": epochs, "device": describe_device(device),
            "threads": torch.get_num_threads(),
            "bare_images_per_s": round(bare_ips, 1), "trainer_images_per_s": round(trainer_ips, 1),
            "trainer_throughput_ratio": round(trainer_ips / bare_ips, 3), "target": TARGET,
            "precision": str(placement.amp_dtype or torch.float32).removeprefix("torch."),
            "plain_float32_images_per_s": round(plain_ips, 1), "placement_speedup": round(placed_ips / plain_ips, 3),
            "training_mflops_per_image": round(flops / 1e6, 2), "matmul_peak_gflops": round(peak / 1e9, 1),
            "trainer_gflops": round(trainer_ips * flops / 1e9, 2),
            "trainer_flops_fraction": round(trainer_ips * flops / peak, 4)}


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    out = measure(epochs=args.epochs, repeats=args.repeats)
    print(json.dumps(out, indent=1))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "throughput.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
