"""Memory a candidate needs to train, estimated from its graph alone, and the default limit.

Why estimate: a candidate too big for the device must never start training (it would waste its share
of the budget and may take the process down); the searcher filters proposals by this number.
The default limit depends on the machine and lives with device placement (``automl.training.device``).
Training memory = parameters x (weights + gradients + 2 Adam moments) + activations kept for the
backward pass (every layer's output, counted twice for its gradient) at the training batch size.
"""

from __future__ import annotations

import math

from automl.arch.graph import Graph

BYTES = 4  # float32


def estimate_memory_mb(graph: Graph, batch_size: int) -> float:
    params = graph.param_count()
    activations = sum(math.prod(shape) for lid, shape in graph.shapes().items() if lid != 0)
    total = params * 4 * BYTES + activations * batch_size * 2 * BYTES
    return total / 2**20
