"""Model anatomy rows and the vanishing/exploding flag, checked against torch directly."""

from __future__ import annotations

import torch
from torch import nn

import tensorscope
from tensorscope import zoo
from tensorscope.anatomy import buffer_rows, depth_profile, module_rows, param_rows, totals


def test_rows_match_named_modules_parameters_buffers() -> None:
    model = zoo.get("cnn_batchnorm").model
    rows = module_rows(model)
    assert [r.path for r in rows] == [n for n, _ in model.named_modules()]
    assert rows[0].params == sum(p.numel() for p in model.parameters())
    assert [r["name"] for r in param_rows(model)] == [n for n, _ in model.named_parameters()]
    names = [r["name"] for r in buffer_rows(model, "features.1")]
    assert names == ["features.1.running_mean", "features.1.running_var", "features.1.num_batches_tracked"]
    t = totals(model)
    assert t["buffer_tensors"] == len(list(model.buffers()))


def test_frozen_and_non_persistent() -> None:
    model = zoo.get("two_layer_mlp").model
    model.fc1.weight.requires_grad_(False)
    model.register_buffer("mask", torch.ones(2), persistent=False)
    row = next(r for r in module_rows(model) if r.path == "fc1")
    assert row.trainable == row.params - model.fc1.weight.numel()
    persistent = {r["name"]: r["persistent"] for r in buffer_rows(model)}
    assert persistent == {"bias_correction": True, "mask": False}


def _deep(act: type[nn.Module], gain: float) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(12):
        lin = nn.Linear(32, 32)
        nn.init.normal_(lin.weight, std=gain / 32 ** 0.5)
        layers += [lin, act()]
    return nn.Sequential(*layers)


def test_vanishing_flagged_and_healthy_not() -> None:
    for model, flag in ((_deep(nn.Sigmoid, 0.3), "vanishing"), (_deep(nn.ReLU, 2 ** 0.5), None)):
        with tensorscope.watch(model) as session:
            model(torch.randn(64, 32)).pow(2).mean().backward()
            session.step()
        prof = depth_profile(model, session.records[0].modules)
        assert len(prof.rows) == 12
        assert prof.flag == flag, (prof.decades, flag)
