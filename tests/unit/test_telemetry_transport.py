"""Recorder, JSON Lines sink and reader, and the event channel's defences (no UI involved)."""

from __future__ import annotations

import json
import time
from multiprocessing import connection

from tensorscope.telemetry import JsonlSink, Recorder, StepRecord, read_jsonl
from tensorscope.transport import EventSender, EventServer


def _wait(predicate, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_recorder_is_bounded_and_survives_a_failing_sink() -> None:
    seen = []

    def broken(record: StepRecord) -> None:
        raise OSError("disk full")

    rec = Recorder(capacity=3, sinks=[broken, seen.append])
    for i in range(5):
        rec.add(StepRecord(step=i, loss=float(i)))
    assert [r.step for r in rec.snapshot()] == [2, 3, 4]
    assert rec.total == 5 and rec.sink_errors == 5 and len(seen) == 5


def test_truncated_record_file_keeps_complete_lines_and_counts_the_rest(tmp_path) -> None:
    path = tmp_path / "run.jsonl"
    sink = JsonlSink(path)
    sink.event("run", script="train.py", argv=[])
    for i in range(1, 5):
        sink(StepRecord(step=i, loss=1.0 / i, lr=[0.1]))
    sink.close()
    data = path.read_bytes()
    path.write_bytes(data[:-20])  # the last step line is cut in the middle
    records, meta, dropped = read_jsonl(path)
    assert [r.step for r in records] == [1, 2, 3]
    assert meta["script"] == "train.py" and dropped == 1 and "exit_code" not in meta
    lines = [json.loads(line) for line in data.decode().splitlines()]
    assert all(line["type"] in {"run", "step"} for line in lines)
    assert {"step", "loss", "lr", "grad_norm", "samples_per_s", "rank"} <= set(lines[1])


BAD_STEP_LINES = [
    {"step": "x", "loss": "abc"},  # found by a user's hand-edited record: replay crashed
    {"step": 1, "lr": "x"},
    {"step": 1, "lr": [0.1, "fast"]},
    {"step": True},
    {"step": 1.5},
    {"step": 1, "loss": "nan"},
    {"step": 1, "epoch": "one"},
    {"step": 1, "phase": "test"},
    {"step": 1, "memory": {"kind": "cuda", "allocated": "1 GiB"}},
    {"step": 1, "amp": {"scale": "65536"}},
    {"step": 1, "modules": {"fc": 3}},
    {"step": 1, "signals": []},
    {"step": 1, "modules": None},  # the charts walk it as a dict
    {"step": 1, "lr": None},
]


def test_record_lines_with_fields_of_the_wrong_kind_are_dropped_and_counted(tmp_path) -> None:
    import pytest

    path = tmp_path / "run.jsonl"
    good = StepRecord(step=2, loss=0.5, lr=[0.1], grad_norm=1.0, memory={"kind": "cpu-rss", "rss": 3},
                      amp={"scale": 1024.0, "growth_tracker": 0, "skipped": False,
                           "autocast_dtype": "bfloat16"}, modules={"fc": {"mean": 0.1}})
    for bad in BAD_STEP_LINES:
        path.write_text(json.dumps({"type": "step", **bad}) + "\n" + json.dumps(good.to_json()) + "\n")
        records, _, dropped = read_jsonl(path)
        assert (records, dropped) == ([good], 1), bad
        with pytest.raises(ValueError, match="bad step record"):
            StepRecord.from_json({"type": "step", **bad})


def test_a_live_step_event_of_the_wrong_kind_is_counted_not_charted(tmp_path) -> None:
    from tensorscope.runsource import LiveRun

    run = LiveRun(str(tmp_path / "train.py"), [], record=str(tmp_path / "r.jsonl"))
    try:
        for bad in BAD_STEP_LINES:
            run._handle({"type": "step", **bad})
        run._handle(StepRecord(step=1, loss=0.5, lr=[0.1]).to_json())
        snap = run.snapshot()
        assert [r.step for r in snap.records] == [1] and run.steps == 1
        assert snap.counters["malformed_frames"] == len(BAD_STEP_LINES)
    finally:
        run.server.close()
        run._sink.close()
    assert [r.step for r in read_jsonl(tmp_path / "r.jsonl")[0]] == [1]  # only the good one kept


def test_server_counts_malformed_frames_and_refuses_wrong_keys() -> None:
    events = []
    server = EventServer(events.append)
    try:
        good = connection.Client(server.address, authkey=server.authkey)
        good.send_bytes(b"not json at all")
        good.send_bytes(b"[1, 2, 3]")  # JSON, but not an event object
        good.send_bytes(json.dumps({"type": "step", "step": 1}).encode())
        good.close()
        assert _wait(lambda: server.received == 1 and server.malformed == 2)
        assert events == [{"type": "step", "step": 1}]
        try:
            bad = connection.Client(server.address, authkey=b"wrong key")
            bad.send_bytes(b'{"type": "step", "step": 2}')
        except Exception:
            pass  # refused during the handshake, as it should be
        assert _wait(lambda: server.refused == 1)
        assert server.received == 1
    finally:
        server.close()


def test_sender_without_a_ui_drops_and_counts_without_blocking(tmp_path) -> None:
    sender = EventSender(str(tmp_path / "nobody-listens"), b"k" * 32, capacity=8)
    for i in range(1000):
        sender.send({"type": "step", "step": i})
    sender.close(timeout=1.0)
    assert sender.sent == 0
    assert _wait(lambda: sender.dropped + len(sender._pending) >= 1000 - 8)


def test_sender_delivers_to_server_in_order() -> None:
    events = []
    server = EventServer(events.append)
    try:
        sender = EventSender(server.address, server.authkey)
        for i in range(50):
            sender.send({"type": "step", "step": i})
        sender.close(timeout=5)
        assert _wait(lambda: len(events) == 50)
        assert [e["step"] for e in events] == list(range(50)) and sender.dropped == 0
    finally:
        server.close()


def test_sender_encodes_off_thread_and_drops_only_an_unserialisable_event() -> None:
    # send() queues the dict; the sender thread encodes it. A circular value cannot be
    # encoded: that one event is dropped and counted, the ones around it still arrive.
    events = []
    server = EventServer(events.append)
    try:
        sender = EventSender(server.address, server.authkey)
        circular: dict = {"type": "step", "step": 1}
        circular["self"] = circular
        sender.send({"type": "step", "step": 0, "value": float("nan")})
        sender.send(circular)
        sender.send({"type": "step", "step": 2})
        sender.close(timeout=5)
        assert _wait(lambda: len(events) == 2)
        assert [e["step"] for e in events] == [0, 2] and sender.dropped == 1
    finally:
        server.close()


def test_step_records_are_sent_in_batches_without_waking_the_sender() -> None:
    events = []
    server = EventServer(events.append)
    try:
        sender = EventSender(server.address, server.authkey)
        sender.send({"type": "run"})  # other events wake the sender thread at once
        assert sender._wake.is_set() or _wait(lambda: len(events) == 1)
        assert _wait(lambda: len(events) == 1)
        for i in range(20):
            sender.send({"type": "step", "step": i})
        assert not sender._wake.is_set()  # steps wait for the thread's next round
        assert _wait(lambda: len(events) == 21)  # which comes without close()
        assert [e.get("step") for e in events[1:]] == list(range(20))
        sender.close(timeout=5)
        assert sender.dropped == 0 and sender.sent == 21
    finally:
        server.close()


def test_send_later_builds_on_the_sender_thread_in_order_and_drops_a_failing_builder() -> None:
    import threading

    events = []
    built_on = []
    server = EventServer(events.append)
    try:
        sender = EventSender(server.address, server.authkey)

        def build(i: int) -> dict:
            built_on.append(threading.current_thread().name)
            if i == 2:
                raise ValueError("a builder that fails")
            return {"type": "step", "step": i}

        sender.send({"type": "step", "step": 0})
        sender.send_later(lambda: build(1))
        sender.send_later(lambda: build(2))
        sender.send({"type": "step", "step": 3})
        sender.close(timeout=5)
        assert _wait(lambda: len(events) == 3)
        assert [e["step"] for e in events] == [0, 1, 3] and sender.dropped == 1
        assert set(built_on) == {"tensorscope-sender"}
    finally:
        server.close()


def test_a_pause_is_taken_out_of_the_part_of_the_step_it_fell_in(tmp_path) -> None:
    from tensorscope.runsource import LiveRun

    run = LiveRun(str(tmp_path / "train.py"), [])
    try:
        run._pauses = [[100.0, 105.0]]

        def step(**fields):
            event = {"wall_time": 106.0, "step_time_s": 7.0, "batch_size": 10,
                     "samples_per_s": 10 / 7.0, "signals": {}, **fields}
            run._leave_out_pauses(event)
            return event

        # Paused while waiting for data (first forward at 105.5): the wait shrinks.
        e = step(data_time_s=6.5, compute_time_s=0.5)
        assert (e["step_time_s"], e["data_time_s"], e["compute_time_s"]) == (2.0, 1.5, 0.5)
        assert e["samples_per_s"] == 5.0 and e["signals"]["paused_s"] == 5.0
        # Paused mid-compute (first forward at 99.5).
        e = step(data_time_s=0.5, compute_time_s=6.5)
        assert (e["step_time_s"], e["data_time_s"], e["compute_time_s"]) == (2.0, 0.5, 1.5)
        # The first step has no data wait: its compute is the whole step (review).
        e = step(data_time_s=None, compute_time_s=7.0)
        assert (e["step_time_s"], e["compute_time_s"]) == (2.0, 2.0)
        # A step that ended before the pause is left alone; a pause still open counts
        # up to the step's end.
        e = step(wall_time=99.0)
        assert e["step_time_s"] == 7.0 and "paused_s" not in e["signals"]
        run._pauses = [[100.0, None]]
        assert step(data_time_s=1.0, compute_time_s=6.0)["signals"]["paused_s"] == 6.0
    finally:
        run.server.close()
