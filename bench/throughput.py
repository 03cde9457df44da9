"""Trainer throughput against a bare PyTorch loop: same model, same in-memory data, batch size and
threads, measured in the same process, alternating.

    python -m bench.throughput [--epochs 2] [--repeats 3]

The bare loop is the least a training loop can do: shuffle, slice, forward, cross-entropy, backward,
Adam step, in float32 with the data on the device (CUDA when present). The trainer does all that
plus what a search needs: batched augmentation, the learning-rate schedule, a validation pass and a
best-state copy per epoch, the deadline and divergence checks. Its images/s counts training images over
its whole wall time, validation included. Target: >= 0.9x.
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

from automl.arch.builder import build_module
from automl.arch.graph import initial_graph
from automl.config import TrainConfig
from automl.training.device import place
from automl.training.trainer import TensorData, set_threads, train_candidate
from bench.common import RESULTS, alternate, tensor_data, timed

TARGET = 0.9


def bare_loop(model: torch.nn.Module, data: TensorData, batch_size: int, epochs: int, device: torch.device) -> None:
    """Plain float32 training with the data already on ``device``."""
    torch.manual_seed(0)
    model = model.to(device)
    x, y = data.x_train.to(device), data.y_train.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), device=device)
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(dataset: str = "mnist5k", image_size: int = 28, epochs: int = 2, repeats: int = 3) -> dict:
    """Images/s of the bare loop and of ``train_candidate`` on the seed's initial network."""
    data, n_classes = tensor_data(dataset, image_size)
    graph = initial_graph(tuple(data.x_train.shape[1:]), n_classes)
    config = TrainConfig(max_epochs=epochs, patience=epochs)
    set_threads(config.threads)
    device = place(config.device).device
    images = epochs * len(data.x_train)

    def bare() -> float:
        return images / timed(lambda: bare_loop(build_module(graph), data, config.batch_size, epochs, device))

    def trainer() -> float:
        result = train_candidate(graph, None, data, config, seed=0)
        assert not result.failed, result.error
        return images / result.train_seconds

    bare_ips, trainer_ips = alternate(bare, trainer, repeats)
    return {"dataset": dataset, "image_size": image_size, "epochs": epochs, "device": describe_device(device),
            "threads": torch.get_num_threads(),
            "bare_images_per_s": round(bare_ips, 1), "trainer_images_per_s": round(trainer_ips, 1),
            "trainer_throughput_ratio": round(trainer_ips / bare_ips, 3), "target": TARGET}


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
