"""The Training screen's rank panel, on recorded runs written by hand (no processes)."""

from __future__ import annotations

import json

from tensorscope.app.app import make_app
from tensorscope.app.context import AppContext
from tensorscope.app.widgets.rank_panel import RankPanel
from tensorscope.runsource import ReplayRun
from tensorscope.telemetry import StepRecord


def _write(path, records, end=None):
    lines = [{"type": "run", "script": "train.py", "argv": []}]
    lines += [r.to_json() for r in records]
    if end is not None:
        lines.append({"type": "end", **end})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return str(path)


def _two_ranks(steps=30, diverge_at=None, slow_rank=None):
    out = []
    for s in range(1, steps + 1):
        for rank in (0, 1):
            checksum = [1.0 + s, 2.0 + s]
            if diverge_at is not None and rank == 1 and s >= diverge_at:
                checksum = [1.5 + s, 2.0 + s]
            out.append(StepRecord(
                step=s, rank=rank, loss=1.0 / s + rank * 0.1, samples_per_s=100.0,
                step_time_s=0.2, data_time_s=0.09 if rank == slow_rank else 0.01,
                memory={"kind": "cpu-rss", "rss": 2**20 * (100 + rank)},
                signals={"param_checksum": checksum}))
    return out


async def _panel_text(path):
    app = make_app(AppContext(run=ReplayRun(path)), screen="training")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        panel = app.screen.query_one(RankPanel)
        status = str(panel.query_one("#rk-status").content)
        table = panel.query_one("#rk-table")
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        return panel.display, status, rows


async def test_healthy_two_rank_run(tmp_path):
    shown, status, rows = await _panel_text(_write(tmp_path / "ok.jsonl", _two_ranks()))
    assert shown
    assert "2 ranks" in status and "in sync (30 steps checked)" in status
    assert "mean loss over ranks 0.08333 (step 30)" in status
    assert [r[0] for r in rows] == ["0", "1"]
    assert rows[0][1] == "30" and rows[0][2] == "200.0 ms" and rows[1][4] == "101.0 MiB"
    assert [r[-1] for r in rows] == ["ok", "ok"]


async def test_divergence_straggler_and_crash_are_flagged(tmp_path):
    failures = [{"rank": 1, "exitcode": 1, "signal": None, "root_cause": True,
                 "message": "RuntimeError: boom"},
                {"rank": 0, "exitcode": -15, "signal": "SIGTERM", "root_cause": False,
                 "message": ""}]
    path = _write(tmp_path / "bad.jsonl", _two_ranks(diverge_at=12, slow_rank=0),
                  end={"exit_code": 1, "failures": failures})
    shown, status, rows = await _panel_text(path)
    assert shown
    assert "DIVERGED at step 12" in status
    assert "rank 0 is a straggler: data time" in status
    assert "rank 1 crashed first (exit code 1): RuntimeError: boom" in status
    assert rows[0][-1] == "failed (SIGTERM)" and rows[1][-1] == "failed (exit 1) first"


async def test_single_process_run_has_no_rank_panel(tmp_path):
    records = [StepRecord(step=s, loss=1.0) for s in range(1, 4)]
    shown, _, rows = await _panel_text(_write(tmp_path / "one.jsonl", records))
    assert not shown and rows == []
