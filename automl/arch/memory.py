"""Memory a candidate needs to train, estimated from its graph alone, and the default limit.

Why estimate: a candidate too big for the device must never start training (it would waste its share
of the budget and may take the process down); the searcher filters proposals by this number.
Training memory = parameters x (weights + gradients + 2 Adam moments) + activations kept for the
backward pass (every layer's output, counted twice for its gradient) at the training batch size.
"""

from __future__ import annotations

import math
import os

from automl.arch.graph import Graph

BYTES = 4  # float32
CPU_FRACTION = 0.25  # of physical memory, leaving room for data, other workers and the OS
GPU_FRACTION = 0.8  # of free device memory


def estimate_memory_mb(graph: Graph, batch_size: int) -> float:
    params = graph.param_count()
    activations = sum(math.prod(shape) for lid, shape in graph.shapes().items() if lid != 0)
    total = params * 4 * BYTES + activations * batch_size * 2 * BYTES
    return total / 2**20


def default_memory_limit_mb() -> float:
    """A share of the free GPU memory when CUDA is available, else of the machine's RAM."""
    try:
        import torch

        if torch.cuda.is_available():
            free, _ = torch.cuda.mem_get_info()
            return GPU_FRACTION * free / 2**20
    except ImportError:  # the searcher itself needs no torch
        pass
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return CPU_FRACTION * pages / 2**20
