"""Augmentation of whole batches of tensors on the device: an epoch has no per-sample Python work."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def augment(x: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop with zero padding (a shift of up to ``padding`` pixels) and optional horizontal
    flip, for a whole batch at once by gathering shifted index grids. The random draws come from the
    CPU ``generator`` (the same on any device), the gather runs where ``x`` is."""
    n, _, h, w = x.shape
    d = x.device
    if padding > 0:
        padded = F.pad(x, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :]
        batch = torch.arange(n)[:, None, None, None]
        chans = torch.arange(x.shape[1])[None, :, None, None]
        x = padded[batch.to(d), chans.to(d), rows.to(d), cols.to(d)]
    if flip:
        mask = (torch.rand(n, generator=generator) < 0.5).to(d)
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x
