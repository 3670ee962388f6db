"""HookSet on its own: selection by name, glob and type; toggling; one fetch per step."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tensorscope import zoo
from tensorscope.errors import UserError
from tensorscope.hooks import HookSet, fetch, select_modules


def test_selection_by_name_glob_type_and_lists() -> None:
    model = zoo.get("transformer").model
    names = lambda spec: [n for n, _ in select_modules(model, spec)]  # noqa: E731
    assert names("head") == ["head"]
    assert names("encoder.layers.*.linear1") == ["encoder.layers.0.linear1", "encoder.layers.1.linear1"]
    assert names(nn.LayerNorm) == [f"encoder.layers.{i}.norm{j}" for i in range(2) for j in (1, 2)]
    assert names(["head", "embed"]) == ["embed", "head"]  # model order
    assert names("head, embed") == ["embed", "head"]
    assert names(None) == []
    with pytest.raises(UserError, match="no module matches nn.GRU|no module matches GRU"):
        select_modules(model, nn.GRU)
    with pytest.raises(UserError, match="no module matches 'decoder'"):
        select_modules(model, "decoder")


def test_take_decode_and_toggle() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    hooks = HookSet(model, "*").attach()
    assert hooks.hook_count == 3
    out = model(torch.randn(5, 3))
    assert hooks.hook_count == 6  # + one gradient hook per output in autograd
    out.sum().backward()
    step = hooks.take()
    assert hooks.hook_count == 3  # output hooks dropped at the step's end
    stats = step.decode(fetch(step.tensors))
    assert set(stats) == {"0", "1", "2"} and stats["2"]["shape"] == [5, 1]
    assert stats["1"]["grad_norm"] > 0
    hooks.remove(["1"])
    assert hooks.names == ["0", "2"]
    hooks.add(["1"])
    hooks.set_modules("2")
    assert hooks.names == ["2"] and hooks.hook_count == 1
    hooks.detach()
    assert hooks.hook_count == 0
    assert all(not m._forward_hooks for m in model.modules())


def test_recording_off_records_nothing() -> None:
    model = nn.Sequential(nn.Linear(3, 4))
    hooks = HookSet(model).attach()
    hooks.recording = False
    model(torch.randn(2, 3))
    assert hooks.take().tensors == []
    hooks.detach()


def test_container_returning_its_childs_output_shares_stats_and_grad() -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
    model = nn.Sequential(layer)
    hooks = HookSet(model).attach()
    model(torch.randn(3, 5, 16)).pow(2).sum().backward()
    step = hooks.take()
    stats = step.decode(fetch(step.tensors))
    hooks.detach()
    # the layer's output is norm2's output tensor: identical numbers, computed once
    for key in ("mean", "std", "abs_max", "hist", "grad_norm"):
        assert stats["0"][key] == stats["0.norm2"][key]
    assert stats["0"]["grad_norm"] > 0


def test_hook_overhead_is_charged_to_the_hookset() -> None:
    # Every hook call adds its own time to overhead_s; a step with hooks costs more than 0.
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    hooks = HookSet(model).attach()
    try:
        assert hooks.overhead_s == 0.0
        model(torch.randn(4, 8, requires_grad=True)).sum().backward()
        first = hooks.overhead_s
        assert first > 0.0
        model(torch.randn(4, 8, requires_grad=True)).sum().backward()
        assert hooks.overhead_s > first
    finally:
        hooks.detach()
