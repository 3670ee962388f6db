"""Small programs whose autograd graphs the graph tests share (and the golden files hold).

Each builds its graph from scratch, so two calls are two runs of the same program.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class Block(nn.Module):
    """A residual MLP block: nested modules, a skip connection, parameter-free ReLU."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, 8)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(8, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x))) + x


class Net(nn.Module):
    """Two blocks in a Sequential, a head, and an op in the model's own forward."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(Block(), Block())
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.head(self.enc(x)))


def arithmetic() -> dict[str, torch.Tensor]:
    """y = (a * b).sin().sum() with named leaves a and b."""
    a = torch.arange(6.0).reshape(2, 3).requires_grad_()
    b = torch.full((2, 3), 0.5, requires_grad=True)
    y = (a * b).sin().sum()
    return {"y": y, "a": a, "b": b}


def nested_model():
    """A recorded forward of Net: (roots, model, trace)."""
    from tensorscope.autograd import ModuleRecorder

    torch.manual_seed(0)
    net = Net()
    with ModuleRecorder() as rec:
        loss = net(torch.randn(2, 4)).pow(2).mean()
    return {"loss": loss}, net, rec.trace


def two_roots() -> dict[str, torch.Tensor]:
    """Two outputs sharing a subgraph, one leaf used twice."""
    x = torch.ones(3, requires_grad=True)
    h = x.exp()
    return {"p": (h * x).sum(), "q": h.mean()}
