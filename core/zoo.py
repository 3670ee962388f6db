"""Small example models, named after what they exercise, each with a synthetic training step.

Tests, demos and the Model screen share them. Every entry builds a fresh, seeded model and
a ``step()`` callable that runs one training step (forward, loss, backward, optimizer step)
on synthetic data drawn from its own generator, so runs are repeatable.

    >>> ex = get("inplace_relu"); ex.step(); ex.model    # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from tensorscope.errors import UserError


class TwoLayerMLP(nn.Module):
    """The syllabus's module anatomy: two Linears, ReLU, Dropout, a learnable scale and a buffer."""

    def __init__(self, in_features: int = 10, hidden: int = 64, out_features: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.relu = nn.ReLU()
        self.drop = nn.Dropout(p=0.3)
        self.fc2 = nn.Linear(hidden, out_features)
        self.scale = nn.Parameter(torch.ones(1))
        self.register_buffer("bias_correction", torch.zeros(out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.relu(self.fc1(x)))
        return self.fc2(x) * self.scale + self.bias_correction


class InplaceReLUNet(nn.Module):
    """Linear -> ReLU(inplace=True): the Linear's output is overwritten in place, which
    breaks ``register_full_backward_hook`` on the Linear but not tensor hooks."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SharedBlockNet(nn.Module):
    """One Linear called twice in a forward: its hooks fire twice, its weight gets two
    gradient contributions."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(8, 16)
        self.shared = nn.Linear(16, 16)
        self.out = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.inp(x))
        h = torch.tanh(self.shared(h))
        h = torch.tanh(self.shared(h))
        return self.out(h)


class SmallCNN(nn.Module):
    """Conv -> BatchNorm -> ReLU -> pool, twice, then a Linear: BatchNorm's running stats are
    buffers that change in training mode only."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class TinyTransformer(nn.Module):
    """Embedding + 2-layer TransformerEncoder + a classifier head over the mean token."""

    def __init__(self, vocab: int = 50, d_model: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        layer = nn.TransformerEncoderLayer(d_model, nhead=4, dim_feedforward=64, dropout=0.1,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(tokens)).mean(dim=1))


@dataclass
class Example:
    """A model, its optimizer and a callable running one training step on synthetic data."""

    name: str
    title: str
    exercises: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    step: Callable[[], float]
    """Runs one step; returns the loss as a float (the caller's own sync, not tensorscope's)."""


def _make(name: str, model: nn.Module,
          batch: Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]],
          criterion: nn.Module, lr: float = 0.05) -> Example:
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    gen = torch.Generator().manual_seed(1234)

    def step() -> float:
        x, y = batch(gen)
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    title, exercises = _INFO[name]
    return Example(name, title, exercises, model, optimizer, step)


def _two_layer_mlp() -> Example:
    return _make("two_layer_mlp", TwoLayerMLP(),
                 lambda g: (torch.randn(32, 10, generator=g), torch.randint(0, 4, (32,), generator=g)),
                 nn.CrossEntropyLoss())


def _sequential_mlp() -> Example:
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
    return _make("sequential_mlp", model,
                 lambda g: (torch.randn(64, 20, generator=g), torch.randn(64, 1, generator=g)),
                 nn.MSELoss(), lr=0.01)


def _transformer() -> Example:
    return _make("transformer",
                 TinyTransformer(),
                 lambda g: (torch.randint(0, 50, (16, 12), generator=g), torch.randint(0, 2, (16,), generator=g)),
                 nn.CrossEntropyLoss(), lr=0.01)


def _cnn() -> Example:
    return _make("cnn_batchnorm",
                 SmallCNN(),
                 lambda g: (torch.randn(16, 1, 16, 16, generator=g), torch.randint(0, 10, (16,), generator=g)),
                 nn.CrossEntropyLoss())


def _inplace() -> Example:
    return _make("inplace_relu",
                 InplaceReLUNet(),
                 lambda g: (torch.randn(32, 16, generator=g), torch.randint(0, 3, (32,), generator=g)),
                 nn.CrossEntropyLoss())


def _shared() -> Example:
    return _make("shared_module",
                 SharedBlockNet(),
                 lambda g: (torch.randn(32, 8, generator=g), torch.randint(0, 2, (32,), generator=g)),
                 nn.CrossEntropyLoss())


_INFO = {
    "two_layer_mlp": ("Two-layer MLP (syllabus)", "nn.Parameter scale, registered buffer, Dropout"),
    "sequential_mlp": ("Sequential MLP", "nn.Sequential, regression with MSELoss"),
    "transformer": ("TransformerEncoder", "attention blocks, LayerNorm, Embedding"),
    "cnn_batchnorm": ("CNN with BatchNorm", "Conv2d, BatchNorm running stats (buffers)"),
    "inplace_relu": ("ReLU(inplace=True)", "an in-place op right after a hooked module"),
    "shared_module": ("Same module called twice", "a module whose hooks fire twice per forward"),
}

_BUILDERS: dict[str, Callable[[], Example]] = {
    "two_layer_mlp": _two_layer_mlp,
    "sequential_mlp": _sequential_mlp,
    "transformer": _transformer,
    "cnn_batchnorm": _cnn,
    "inplace_relu": _inplace,
    "shared_module": _shared,
}


def catalogue() -> list[tuple[str, str, str]]:
    """(name, title, what it exercises) of every example, without building any model."""
    return [(name, *_INFO[name]) for name in _BUILDERS]


def names() -> list[str]:
    """Names of the example models, in the order the Model screen lists them."""
    return list(_BUILDERS)


def get(name: str, seed: int = 0) -> Example:
    """A fresh example (model built under ``torch.manual_seed(seed)``); UserError if unknown."""
    builder = _BUILDERS.get(name)
    if builder is None:
        raise UserError(f"no example model named {name!r} (choose from: {', '.join(_BUILDERS)})")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return builder()
