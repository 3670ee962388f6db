"""Weighing a step's criterion calls by the gradient that reached each one.

The loss a script's backward passes minimise is, to first order, the sum of its criterion
outputs each times the gradient that flows into it: 1 for ``real + fake``, 1/4 for
``(loss / 4).backward()``, 0 for a criterion computed only as a metric. The watch takes
these weights on its full steps, and ``tensorscope run`` takes them for step 1, before any
watch exists: a gradient hook on each output adds into ``weights[index]``.
"""

from __future__ import annotations

import torch


def add_weight(weights: dict[int, torch.Tensor], index: int, grad: torch.Tensor) -> None:
    """Add the gradient that reached criterion call ``index`` (it may be reached by more
    than one backward pass) to its weight."""
    weight = grad.detach().float().reshape(())
    known = weights.get(index)
    weights[index] = weight if known is None else known + weight


def weight_vector(weights: dict[int, torch.Tensor], count: int, device: torch.device,
                  start: int = 0) -> torch.Tensor:
    """The weights of calls ``start`` .. ``start + count - 1`` as one tensor on ``device``
    (0 for a call no gradient reached)."""
    zero = torch.zeros((), device=device)
    return torch.stack([weights.get(start + i, zero).to(device) for i in range(count)])
