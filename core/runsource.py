"""Where the Training screen's data comes from: a live ``tensorscope run`` or a recorded file.

Both sources hand out a frozen :class:`RunSnapshot` on demand, so the UI can poll at its
own pace (≤ 20 Hz) whatever the step rate; the live one is filled by the transport's
thread and by threads that read the script's output.

:class:`LiveRun` starts the script (``python -m tensorscope._bootstrap SCRIPT ARGS``) with
``subprocess.Popen`` — before the UI starts, which avoids the "bad value(s) in fds_to_keep"
trap of starting a child inside a running Textual app — and can pause (SIGSTOP), resume
(SIGCONT) or stop (SIGINT, then SIGTERM) it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from tensorscope.errors import UserError, syntax_error
from tensorscope.telemetry import JsonlSink, StepRecord, read_jsonl
from tensorscope.transport import EventServer

MAX_OUTPUT_LINES = 5000
MAX_RECORDS = 100_000


@dataclass(frozen=True)
class RunSnapshot:
    """Everything the Training screen shows, frozen at one moment."""

    source: str
    """"live" or "replay"."""
    label: str
    """The script (live) or the record file (replay)."""
    records: tuple[StepRecord, ...]
    state: str
    """"starting", "running", "paused", "finished", "crashed" (a Python exception),
    "failed" (a non-zero exit without one) or "recorded"."""
    exit_code: int | None = None
    error: dict[str, Any] | None = None
    """The crash: {"exc_type", "message", "traceback"}."""
    meta: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] | None = None
    output: tuple[str, ...] = ()
    """The script's last MAX_OUTPUT_LINES lines of output."""
    output_total: int = 0
    """Lines the script has printed in all (0: as many as ``output`` holds)."""
    counters: dict[str, int] = field(default_factory=dict)
    """malformed / refused frames, dropped events, hook errors, dropped record lines."""
    version: int = 0
    """Grows with every change: the UI redraws only when it moved."""

    @property
    def lines_printed(self) -> int:
        """Lines the script has printed in all, kept or not."""
        return self.output_total or len(self.output)

    def output_since(self, seen: int) -> tuple[tuple[str, ...], int]:
        """The lines printed after the first ``seen`` (counted over the whole run, so past
        the window ``output`` keeps), and how many of them fell out of that window."""
        new = self.lines_printed - seen
        if new <= 0:
            return (), 0
        kept = min(new, len(self.output))
        return self.output[len(self.output) - kept:], new - kept

    @property
    def crash(self) -> str | None:
        """"ExcType: message" of the run's crash (None when it did not crash)."""
        if not self.error:
            return None
        message = self.error.get("message")
        return f"{self.error.get('exc_type')}" + (f": {message}" if message else "")

    @property
    def train(self) -> list[StepRecord]:
        return [r for r in self.records if r.phase == "train"]

    @property
    def finished(self) -> bool:
        return self.state in {"finished", "crashed", "failed", "recorded"}


def check_script(path: str) -> str:
    """The script's absolute path; UserError when it is missing or does not compile."""
    if not os.path.exists(path):
        raise UserError(f"no such script: {path}")
    if os.path.isdir(path):
        raise UserError(f"{path} is a folder, not a Python script")
    try:
        with open(path, "rb") as handle:
            source = handle.read()
        compile(source, path, "exec")
    except SyntaxError as exc:
        error = syntax_error(path, exc)
        error.exit_code = 1  # what `python script.py` exits with for it
        raise error from None
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    return os.path.abspath(path)


class LiveRun:
    """A script running in a child process, watched through the event channel."""

    def __init__(self, script: str, args: list[str], *, record: str | None = None,
                 capture_output: bool = True, on_event: Callable[[dict], None] | None = None,
                 detail: str = "sampled"):
        self.script = script
        self.detail = detail
        self.args = list(args)
        self.capture_output = capture_output
        self._lock = threading.Lock()
        self._records: deque[StepRecord] = deque(maxlen=MAX_RECORDS)
        self._output: deque[str] = deque(maxlen=MAX_OUTPUT_LINES)
        self._output_total = 0
        self._meta: dict[str, Any] = {"script": script, "argv": self.args}
        self._model: dict[str, Any] | None = None
        self._error: dict[str, Any] | None = None
        self._end: dict[str, Any] | None = None
        self._exit_code: int | None = None
        self._paused = False
        self._pauses: list[list[float | None]] = []
        """[paused at, resumed at (None: still paused)] in wall-clock seconds."""
        self._version = 0
        self._on_event = on_event
        self.steps = 0
        self.bad_records = 0
        """Step events that were valid JSON but not valid records (see _handle)."""
        self.quit_choice = "leave"
        """What closing the UI does to a running script: "leave" it running, or "stop" it."""
        self._ended = threading.Event()
        self._sink = JsonlSink(record) if record else None
        if self._sink is not None:
            self._sink.event("run", script=script, argv=self.args, started=time.time())
        self.server = EventServer(self._handle)
        self.proc: subprocess.Popen | None = None
        self._readers: list[threading.Thread] = []

    # --- the child ----------------------------------------------------------------------

    def start(self) -> "LiveRun":
        env = {**os.environ, **self.server.env(), "TENSORSCOPE_DETAIL": self.detail}
        if self.capture_output:
            env["PYTHONUNBUFFERED"] = "1"  # the UI shows lines as they come, not per 8 KiB
        cmd = self._command()
        pipe = subprocess.PIPE if self.capture_output else None
        self.proc = subprocess.Popen(cmd, env=env, stdout=pipe, stderr=pipe,
                                     stdin=subprocess.DEVNULL if self.capture_output else None)
        if self.capture_output:
            for stream, name in ((self.proc.stdout, "out"), (self.proc.stderr, "err")):
                reader = threading.Thread(target=self._read, args=(stream,), daemon=True,
                                          name=f"tensorscope-std{name}")
                reader.start()
                self._readers.append(reader)
        threading.Thread(target=self._wait, daemon=True, name="tensorscope-wait").start()
        self._bump()
        return self

    def _command(self) -> list[str]:
        """The child's command line: the bootstrap that instruments, then runs, the script."""
        return [sys.executable, "-m", "tensorscope._bootstrap", self.script, *self.args]

    def _read(self, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lock:
                self._output.append(line)
                self._output_total += 1
                self._version += 1

    def _wait(self) -> None:
        assert self.proc is not None
        code = self.proc.wait()
        for reader in self._readers:
            reader.join(5)
        # The child flushes its events before it exits; give the channel a moment to drain.
        deadline = time.monotonic() + 3.0
        while self._end is None and time.monotonic() < deadline:
            time.sleep(0.02)
        with self._lock:
            self._exit_code = 128 - code if code < 0 else code  # killed by a signal: 128+N
            self._paused = False
            self._version += 1
        if self._sink is not None:
            # The child's own end line (steps, hook errors, which watch streamed, events
            # dropped) goes into the record too; the exit code is the parent's view of it.
            child = {k: v for k, v in (self._end or {}).items() if k != "exit_code"}
            self._sink.event("end", exit_code=self._exit_code, **child)
            self._sink.close()
        self._ended.set()

    def wait(self, timeout: float | None = None) -> int | None:
        self._ended.wait(timeout)
        return self._exit_code

    @property
    def running(self) -> bool:
        return self.proc is not None and self._exit_code is None

    def pause(self) -> bool:
        if self.running and not self._paused and hasattr(signal, "SIGSTOP"):
            os.kill(self.proc.pid, signal.SIGSTOP)  # type: ignore[union-attr]
            with self._lock:
                self._paused = True
                self._pauses.append([time.time(), None])
                self._version += 1
            return True
        return False

    def resume(self) -> bool:
        if self.running and self._paused:
            with self._lock:
                # Closed before the child runs again: its next step event must see it.
                self._pauses[-1][1] = time.time()
                self._paused = False
                self._version += 1
            os.kill(self.proc.pid, signal.SIGCONT)  # type: ignore[union-attr]
            return True
        return False

    def _leave_out_pauses(self, event: dict[str, Any]) -> None:
        """Take the time the script sat paused out of the step that spans it.

        SIGSTOP stops the child's clocks for nobody: the step in flight when the user
        paused would otherwise last as long as the pause, and its samples/s, the step-time
        chart and the ETA with it. The step ends at ``wall_time``; its step time, data
        wait (from its start) and compute (up to its end) are each shortened by the part of
        the pauses that fell inside them. The time taken out is kept in
        ``signals["paused_s"]``."""
        end, took = event.get("wall_time"), event.get("step_time_s")
        if not isinstance(end, (int, float)) or not isinstance(took, (int, float)) or took <= 0:
            return

        def paused_within(begin: float, finish: float) -> float:
            total = 0.0
            for stopped, resumed in self._pauses:
                resumed = end if resumed is None else resumed
                total += max(0.0, min(finish, resumed) - max(begin, stopped))
            return total

        start = end - took
        paused = paused_within(start, end)
        if paused <= 0:
            return
        left = took - paused
        event["step_time_s"] = left if left > 0 else None
        data = event.get("data_time_s")
        if isinstance(data, (int, float)) and data > 0:
            event["data_time_s"] = max(0.0, data - paused_within(start, start + data))
        compute = event.get("compute_time_s")
        if isinstance(compute, (int, float)) and compute > 0:
            # (On the first step there is no data wait: compute is the whole step.)
            event["compute_time_s"] = max(0.0, compute - paused_within(end - compute, end))
        batch = event.get("batch_size")
        if event.get("samples_per_s") is not None:
            event["samples_per_s"] = (batch / left if isinstance(batch, (int, float)) and left > 0
                                      else None)
        signals = event.get("signals")
        if isinstance(signals, dict):
            signals["paused_s"] = paused

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the script cleanly: resume if paused, SIGINT (KeyboardInterrupt), then SIGTERM."""
        if not self.running:
            return
        self.resume()
        try:
            self.proc.send_signal(signal.SIGINT)  # type: ignore[union-attr]
        except ProcessLookupError:
            return
        if self.wait(timeout) is None and self.running:
            self.proc.terminate()  # type: ignore[union-attr]
            self.wait(timeout)

    def close(self) -> None:
        self.server.close()

    # --- events ---------------------------------------------------------------------

    def _handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "step":
            if self._pauses:
                with self._lock:
                    self._leave_out_pauses(event)
            try:
                record = StepRecord.from_json(event)
            except (TypeError, ValueError):
                # Authenticated but not a step record the UI can chart: dropped and
                # counted with the other malformed frames, and not written to --record.
                with self._lock:  # (one server thread per connection: ranks)
                    self.bad_records += 1
                    self._version += 1
                return
        with self._lock:
            if kind == "step":
                self._records.append(record)
                if record.phase == "train":
                    self.steps += 1
            elif kind == "run":
                self._meta.update({k: v for k, v in event.items() if k != "type"})
            elif kind == "model":
                self._model = {k: v for k, v in event.items() if k != "type"}
            elif kind == "error":
                self._error = {k: v for k, v in event.items() if k != "type"}
            elif kind == "end":
                self._end = {k: v for k, v in event.items() if k != "type"}
            self._version += 1
        if self._sink is not None and kind in {"step", "error", "model"}:
            self._sink.write(event)
        if self._on_event is not None:
            self._on_event(event)

    def _bump(self) -> None:
        with self._lock:
            self._version += 1

    def snapshot(self) -> RunSnapshot:
        with self._lock:
            if self._exit_code is not None:
                # A non-zero exit without a Python exception (sys.exit(2), an argparse
                # error, a signal) is not a finished run either.
                state = ("crashed" if self._error is not None
                         else "failed" if self._exit_code != 0 else "finished")
            elif self.proc is None:
                state = "starting"
            else:
                state = "paused" if self._paused else "running"
            end = self._end or {}
            counters = {
                "malformed_frames": self.server.malformed + self.bad_records,
                "refused_clients": self.server.refused,
                "dropped_events": int(end.get("dropped_events") or 0),
                "hook_errors": int(end.get("hook_errors") or 0),
            }
            meta = dict(self._meta)
            if end.get("watch"):
                meta["watch"] = end["watch"]
            return RunSnapshot(
                source="live", label=os.path.basename(self.script), records=tuple(self._records),
                state=state, exit_code=self._exit_code, error=self._error, meta=meta,
                model=self._model, output=tuple(self._output),
                output_total=self._output_total, counters=counters,
                version=self._version,
            )


class FinishedRun:
    """A run that is over: one frozen snapshot, nothing to pause. Subclasses build it."""

    _snapshot: RunSnapshot

    def snapshot(self) -> RunSnapshot:
        return self._snapshot

    def pause(self) -> bool:
        return False

    def resume(self) -> bool:
        return False

    @property
    def running(self) -> bool:
        return False


class ReplayRun(FinishedRun):
    """A recorded run (``--record FILE``), read whole; a truncated file keeps every complete line."""

    def __init__(self, path: str) -> None:
        self.path = path
        records, meta, dropped = read_jsonl(path)
        self.dropped = dropped
        error = meta.pop("error", None)
        exit_code = meta.pop("exit_code", None)
        ended = meta.pop("ended", False)
        meta["ended"] = ended
        self._snapshot = RunSnapshot(
            source="replay", label=os.path.basename(path), records=tuple(records),
            state="recorded", exit_code=exit_code, error=error, meta=meta,
            model=meta.get("model"), counters={"dropped_lines": dropped}, version=1,
        )


def recent_records(folder: str = ".", limit: int = 8) -> list[str]:
    """Record files (``*.jsonl``) in ``folder``, newest first."""
    try:
        names = [n for n in os.listdir(folder) if n.endswith(".jsonl")]
    except OSError:
        return []
    paths = [os.path.join(folder, n) for n in names]
    paths.sort(key=lambda p: os.path.getmtime(p), reverse=True)
    return paths[:limit]
