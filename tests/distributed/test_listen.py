"""Runs tensorscope did not start: `torchrun ... -m tensorscope._bootstrap` connecting by address."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.distributed import GLOO_TEARDOWN_RERUN

from tensorscope.listen_run import ListenRun
from tensorscope.rank_stats import compare_checksums
from tensorscope.telemetry import StepRecord, read_jsonl

pytestmark = GLOO_TEARDOWN_RERUN
from tensorscope.transport import EventSender

FIXTURE = Path(__file__).parent / "fixtures" / "ddp_tiny.py"


def test_listen_ends_when_every_process_has_ended_with_the_worst_exit_code(tmp_path):
    source = ListenRun(record=str(tmp_path / "r.jsonl")).start()
    try:
        env = source.server.env()
        senders = [EventSender(env["TENSORSCOPE_ADDRESS"], bytes.fromhex(env["TENSORSCOPE_AUTHKEY"]))
                   for _ in range(2)]
        for rank, sender in enumerate(senders):
            sender.send({"type": "run", "script": "train.py", "rank": rank, "pid": 100 + rank})
            sender.send(StepRecord(step=1, rank=rank, loss=1.0).to_json())
        senders[0].send({"type": "end", "exit_code": 0, "rank": 0})
        senders[0].close()
        assert source.wait(2.0) is None  # rank 1 has not ended: still running
        assert source.snapshot().state == "running"
        senders[1].send({"type": "error", "exc_type": "RuntimeError", "message": "boom",
                         "traceback": "", "rank": 1})
        senders[1].send({"type": "end", "exit_code": 1, "rank": 1})
        senders[1].close()
        assert source.wait(20.0) == 1
        snap = source.snapshot()
        assert snap.state == "crashed" and snap.error["rank"] == 1
        assert sorted(r.rank for r in snap.records) == [0, 1]
    finally:
        source.close()
    records, meta, _ = read_jsonl(tmp_path / "r.jsonl")
    assert len(records) == 2 and meta["exit_code"] == 1


@pytest.mark.slow
def test_a_torchrun_job_streams_to_tensorscope_listen(tmp_path):
    record = tmp_path / "torchrun.jsonl"
    listener = subprocess.Popen(
        [sys.executable, "-m", "tensorscope.app.cli", "listen", "--headless", "--record", str(record)],
        stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        env = dict(os.environ)
        for _ in range(3):  # the instructions are the first three lines
            line = listener.stderr.readline()
            for key, value in re.findall(r"(TENSORSCOPE_\w+)=(\S+)", line):
                env[key] = value
        assert "TENSORSCOPE_ADDRESS" in env and "TENSORSCOPE_AUTHKEY" in env
        job = subprocess.run(
            [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc-per-node", "2",
             "-m", "tensorscope._bootstrap", str(FIXTURE), "--steps", "4"],
            env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
        assert job.returncode == 0, job.stderr[-3000:]
        assert listener.wait(timeout=60) == 0
    finally:
        if listener.poll() is None:
            listener.kill()
    records, meta, _ = read_jsonl(record)
    train = [r for r in records if r.phase == "train"]
    assert sorted((r.rank, r.step) for r in train) == [(r, s) for r in (0, 1) for s in range(1, 5)]
    assert compare_checksums(train).in_sync is True and meta["exit_code"] == 0
