"""Small data and models the demos share (seeded, CPU-sized: each demo runs in seconds)."""

from __future__ import annotations

import torch
from torch import nn


def regression_data(n: int = 32, features: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed batch for a linear regression: inputs and noisy targets."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=gen)
    w = torch.randn(features, 1, generator=gen)
    y = x @ w + 0.1 * torch.randn(n, 1, generator=gen)
    return x, y


def classification_data(n: int = 256, features: int = 20, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Points labelled by the side of a random hyperplane they fall on (two classes)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=gen)
    w = torch.randn(features, generator=gen)
    return x, (x @ w > 0).long()


def small_mlp(features: int = 20, hidden: int = 32, classes: int = 2, dropout: float = 0.0,
              batchnorm: bool = False, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(features, hidden)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(hidden))
    layers.append(nn.ReLU())
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(hidden, classes))
    return nn.Sequential(*layers)


def rounded(values, digits: int = 4) -> list[float]:
    return [float(f"{v:.{digits}g}") for v in values]
