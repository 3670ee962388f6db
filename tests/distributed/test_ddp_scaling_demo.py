"""The ddp-scaling demo really launches 1 and 2 gloo ranks and fills its table."""

from __future__ import annotations

import pytest

from tensorscope import demos

pytestmark = pytest.mark.slow


def test_ddp_scaling_measures_both_worlds():
    scenario = demos.get("ddp-scaling")
    assert "ddp-scaling" in demos.NAMES
    facts = scenario.measure(False, nproc=2, steps=4).facts
    assert facts["backend"] == "gloo" and facts["ranks"] == 2
    assert facts["samples_per_s_1_rank"] > 0 and facts["samples_per_s_2_ranks"] > 0
    # The comm hook saw gradients go through all-reduce at 2 ranks.
    assert facts["allreduce_ms_per_step_2_ranks"] > 0
    expected = facts["samples_per_s_2_ranks"] / (2 * facts["samples_per_s_1_rank"])
    assert facts["scaling_efficiency"] == pytest.approx(expected, rel=0.01)
    lines = facts["scaling_table"].splitlines()
    assert len(lines) == 3 and "efficiency" in lines[0] and lines[1].split()[-1] == "100%"
    assert facts["gradient_MiB_per_step"] == pytest.approx(
        (512 * 512 * 2 + 512 * 2 + 512 * 10 + 10) * 4 / 2**20, rel=0.01)
