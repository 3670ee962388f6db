"""The ddp-scaling demo really launches 1 and 2 gloo ranks and fills its table."""

from __future__ import annotations

import pytest

from tests.distributed import GLOO_TEARDOWN_RERUN

from tensorscope import demos

pytestmark = [pytest.mark.slow, GLOO_TEARDOWN_RERUN]


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


def test_a_result_written_before_a_teardown_abort_is_kept(tmp_path, monkeypatch) -> None:
    """gloo can abort a rank at teardown after the last barrier; the measurement stands."""
    import json as _json

    from tensorscope.demos import ddp_scaling

    class Failure:
        def describe(self) -> str:
            return "rank 1: SIGABRT"

    class Result:
        ok = False
        failures = [Failure()]

    def fake_launch(nproc, argv, env=None, quiet=False):
        out = argv[3]
        with open(out, "w") as handle:
            _json.dump({"world": nproc, "step_ms": 2.0, "allreduce_ms": 0.5, "cpu_ms": 2.0,
                        "backend": "gloo", "grad_bytes": 4}, handle)
        return Result()

    monkeypatch.setattr("tensorscope.distributed.launch", fake_launch)
    measured = ddp_scaling._run_world(2, 3, "gloo")
    assert measured["step_ms"] == 2.0 and measured["teardown_failure"] == "rank 1: SIGABRT"

    def failing_launch(nproc, argv, env=None, quiet=False):
        return Result()  # nothing written: a real failure

    monkeypatch.setattr("tensorscope.distributed.launch", failing_launch)
    import pytest

    with pytest.raises(RuntimeError, match="failed: rank 1: SIGABRT"):
        ddp_scaling._run_world(2, 3, "gloo")
