"""`tensorscope run --nproc 2` on an unmodified gloo DDP script, end to end.

Each test launches two real ranks through torch.distributed's elastic launcher (a few
seconds each on a small machine), so there are only two: the clean run and the crash.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.distributed import GLOO_TEARDOWN_RERUN

from tensorscope.rank_stats import compare_checksums, mean_loss_by_step
from tensorscope.telemetry import read_jsonl

FIXTURE = Path(__file__).parent / "fixtures" / "ddp_tiny.py"

pytestmark = [pytest.mark.slow, GLOO_TEARDOWN_RERUN]


def _run(tmp_path, *script_args):
    record = tmp_path / "run.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "tensorscope.app.cli", "run", "--nproc", "2", "--headless",
         "--json", "--record", str(record), str(FIXTURE), *script_args],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    return proc, summary, record


def test_two_ranks_record_every_step_with_its_rank(tmp_path):
    proc, summary, record = _run(tmp_path, "--steps", "5")
    assert proc.returncode == 0, proc.stderr
    assert "terminate called" not in proc.stderr
    records, meta, dropped = read_jsonl(record)
    assert dropped == 0 and meta["exit_code"] == 0
    train = [r for r in records if r.phase == "train"]
    assert sorted((r.rank, r.step) for r in train) == [(r, s) for r in (0, 1) for s in range(1, 6)]
    # Each rank's own loss is there, and the mean over ranks exists for every step.
    assert all(r.loss is not None for r in train)
    assert [p.ranks for p in mean_loss_by_step(train)] == [2] * 5
    # DDP keeps the parameters identical: every step's checksums agree across ranks.
    report = compare_checksums(train)
    assert report.checked_steps == 5 and report.in_sync is True
    assert summary["ranks"] == [0, 1] and summary["steps_per_rank"] == {"0": 5, "1": 5}
    assert summary["params_in_sync"] is True and summary["exit_code"] == 0
    assert summary["steps"] == 5  # the run's steps, not both ranks' added up (walk-through)


def test_a_crashing_rank_keeps_the_others_records_and_fails_the_run(tmp_path):
    proc, summary, record = _run(tmp_path, "--crash-at", "3")
    assert proc.returncode == 1  # torchrun's exit code for a failed child
    assert "rank 1 failed (first failure): exit code 1" in proc.stderr
    assert "rank 1 crashed on purpose at step 3" in proc.stderr
    records, meta, _ = read_jsonl(record)
    steps = {(r.rank, r.step) for r in records if r.phase == "train"}
    # Both ranks finished steps 1-3 before rank 1 died at its fourth iteration.
    assert {(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3)} <= steps
    root = [f for f in summary["failures"] if f["root_cause"]]
    assert [f["rank"] for f in root] == [1]
    assert root[0]["message"] == "RuntimeError: rank 1 crashed on purpose at step 3"
    assert meta["exit_code"] == 1 and [f["rank"] for f in meta["failures"]][0] == 1


def test_weights_changed_on_one_rank_are_flagged_out_of_sync(tmp_path):
    # Rank 1 nudges a bias after its third optimizer step (loop index 2 = step 3).
    proc, summary, _ = _run(tmp_path, "--steps", "6", "--diverge-at", "2")
    assert proc.returncode == 0, proc.stderr
    assert summary["params_in_sync"] is False
    assert summary["sync_first_divergence"] == 4  # checked after the next step, step 4
