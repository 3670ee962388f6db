"""Every scenario runs headless; each bug yields its finding, each fixed twin none."""

from __future__ import annotations

import json

import pytest

from tensorscope.demos import NAMES, catalogue, get
from tensorscope.errors import UserError

REQUIRED = {
    "missing-zero-grad", "grad-accumulation", "strides-contiguity", "memory-sharing",
    "retain-graph-detach", "inplace-autograd", "eval-no-grad", "item-sync", "train-eval-mode",
    "device-mix", "amp-scaler", "checkpoint-resume", "glu-layer", "init-grad-norms", "lr-finder",
    "custom-gelu", "dataloader-throughput",
}


def test_catalogue_has_every_required_scenario() -> None:
    assert REQUIRED <= set(NAMES)
    for s in catalogue():
        assert s.name and s.title and s.lesson.strip() and s.code.strip() and s.screens


def test_unknown_name_is_a_user_error_listing_names() -> None:
    with pytest.raises(UserError, match="missing-zero-grad"):
        get("no-such-demo")


@pytest.fixture(scope="module")
def summaries() -> dict:
    return {}


@pytest.mark.parametrize("name", NAMES)
def test_runs_headless_and_yields_its_finding(name: str) -> None:
    scenario = get(name)
    summary = scenario.run_headless()
    json.dumps(summary, allow_nan=False)  # plain, strict JSON data
    assert summary["name"] == name and summary["facts"]
    codes = {f["code"] for f in summary["findings"]}
    if scenario.finding:
        assert scenario.finding in codes
    if scenario.is_bug:
        assert summary["fixed"]["findings"] == [], summary["fixed"]["findings"]


def _facts(name: str, fixed: bool = False) -> dict:
    return get(name).measure(fixed).facts


def test_missing_zero_grad_grad_norm_grows_and_fix_does_not() -> None:
    bug, fix = _facts("missing-zero-grad"), _facts("missing-zero-grad", True)
    assert bug["grad_norms"][3] > 3 * bug["grad_norms"][0]
    assert fix["grad_norm_growth"] < 1.0


def test_grad_accumulation_equals_full_batch() -> None:
    facts = _facts("grad-accumulation")
    assert facts["max_abs_diff_vs_full_batch_grad"] < 1e-5
    assert set(facts["backward_passes_per_step"]) == {4}


def test_memory_sharing_write_through_and_clone_independent() -> None:
    assert _facts("memory-sharing")["a_after_write"][0] == 99.0
    assert _facts("memory-sharing", True)["a_after_write"] == [1.0, 1.0, 1.0, 1.0]


def test_item_sync_counts_one_sync_per_step() -> None:
    assert set(_facts("item-sync")["host_syncs_per_step"]) == {1}
    assert set(_facts("item-sync", True)["host_syncs_per_step"]) == {0}


def test_amp_skip_halves_scale() -> None:
    facts = _facts("amp-scaler")
    i = facts["injected_inf_at_step"]
    assert facts["skipped_steps"] == [i]  # steps count from 1, as under tensorscope run
    assert facts["scales"][i - 1] == facts["scales"][i - 2] / 2


def test_checkpoint_resume_diverges_without_optimizer_state() -> None:
    assert _facts("checkpoint-resume")["max_param_diff_vs_uninterrupted"] > 1e-3
    assert _facts("checkpoint-resume", True)["max_param_diff_vs_uninterrupted"] == 0.0


def test_custom_gelu_gradcheck() -> None:
    assert _facts("custom-gelu")["gradcheck_float64"] is False
    fixed = _facts("custom-gelu", True)
    assert fixed["gradcheck_float64"] is True and fixed["max_grad_diff_vs_nn_GELU_tanh"] < 1e-10


def test_graph_roots_and_context_fields() -> None:
    import torch

    roots = get("inplace-autograd").graph_roots()
    assert roots and all(isinstance(t, torch.Tensor) for t in roots.values())
    fields = get("strides-contiguity").context_fields()
    assert fields["statements"] and fields["demo"].name == "strides-contiguity"
