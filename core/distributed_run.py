"""A live multi-rank run: ``tensorscope run --nproc N`` as a source for the Training screen.

:class:`DistributedRun` is a :class:`~tensorscope.runsource.LiveRun` whose child is the
launcher process (``python -m tensorscope._launcher N SCRIPT ARGS``, see core/_launcher.py)
instead of the script itself. Every rank connects to the same event server, so the one
snapshot holds all ranks' step records (each with its ``rank``), and ``--record FILE``
receives them all in one JSON Lines file.

What differs from one process:

- errors arrive per rank; the snapshot's ``error`` is the root cause's (the first rank that
  failed, as the launcher saw it) and ``meta["failures"]`` lists every failed rank;
- the run ends when the launcher says so (``launch_end``), not at the first rank's ``end``;
- pausing is not offered: SIGSTOP to the launcher would not reach the ranks, and stopping
  one rank of a collective job stalls the others anyway. Stop (SIGINT to the launcher)
  stops every rank, as Ctrl-C does under torchrun.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from tensorscope.errors import UserError
from tensorscope.runsource import LiveRun

MAX_NPROC = 64
"""More local ranks than this is a typo, not a plan (one host, one process per rank)."""


class DistributedRun(LiveRun):
    """N ranks of one script, launched by torch.distributed's engine, watched as one run."""

    def __init__(self, script: str, args: list[str], *, nproc: int, **kwargs: Any) -> None:
        check_nproc(nproc)
        self.nproc = nproc
        self._rank_errors: dict[int, dict[str, Any]] = {}
        self._rank_ends: dict[int, dict[str, Any]] = {}
        self._failures: list[dict[str, Any]] = []
        super().__init__(script, args, **kwargs)
        self._meta["nproc"] = nproc

    def _command(self) -> list[str]:
        """The launcher process, which starts every rank through the bootstrap."""
        return [sys.executable, "-m", "tensorscope._launcher", str(self.nproc), self.script,
                *self.args]

    def _wait(self) -> None:
        assert self.proc is not None
        code = self.proc.wait()
        for reader in self._readers:
            reader.join(5)
        deadline = time.monotonic() + 3.0  # the launcher's last event may still be in flight
        while self._end is None and time.monotonic() < deadline:
            time.sleep(0.02)
        with self._lock:
            self._exit_code = 128 - code if code < 0 else code
            self._version += 1
            failures = list(self._failures)
        if self._sink is not None:
            self._sink.event("end", exit_code=self._exit_code, nproc=self.nproc,
                             failures=failures)
            self._sink.close()
        self._ended.set()

    no_pause_reason = ("a multi-rank run is not paused: stopping one rank stalls the others "
                       "in their collectives (q can stop them all)")

    def pause(self) -> bool:
        return False

    def _handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        rank = event.get("rank")
        if kind == "error":
            with self._lock:
                self._rank_errors[rank] = {k: v for k, v in event.items() if k != "type"}
                if self._error is None:
                    self._error = self._rank_errors[rank]
                self._version += 1
            if self._sink is not None:
                self._sink.write(event)
            return
        if kind == "end":
            with self._lock:
                self._rank_ends[rank] = event
                self._version += 1
            return
        if kind == "launch_end":
            with self._lock:
                self._failures = list(event.get("failures") or [])
                root = next((f for f in self._failures if f.get("root_cause")), None)
                if root is not None and root.get("rank") in self._rank_errors:
                    self._error = self._rank_errors[root["rank"]]
                elif root is not None and self._error is None:
                    self._error = {"exc_type": None, "rank": root.get("rank"),
                                   "message": root.get("message") or _how(root),
                                   "traceback": ""}
                ends = list(self._rank_ends.values())
                self._end = {
                    "exit_code": event.get("exit_code"),
                    "dropped_events": sum(int(e.get("dropped_events") or 0) for e in ends),
                    "hook_errors": sum(int(e.get("hook_errors") or 0) for e in ends),
                    "watch": next((e.get("watch") for e in ends if e.get("watch")), None),
                }
                self._meta["failures"] = self._failures
                self._version += 1
            return
        if kind == "run" and rank is not None:
            with self._lock:
                started = self._meta.setdefault("ranks_started", [])
                if rank not in started:
                    started.append(rank)
        super()._handle(event)

    def snapshot(self):
        snap = super().snapshot()
        if snap.exit_code not in (None, 0) and snap.state in ("finished", "failed"):
            # A rank killed by the launcher (no error event of its own) is still a crash.
            from dataclasses import replace

            return replace(snap, state="crashed")
        return snap


def _how(failure: dict[str, Any]) -> str:
    if failure.get("signal"):
        return f"killed by {failure['signal']}"
    return f"exit code {failure.get('exitcode')}"


def check_nproc(nproc: int) -> None:
    """UserError unless ``nproc`` is a rank count this machine's launcher is asked for."""
    if not 1 <= nproc <= MAX_NPROC:
        raise UserError(f"--nproc must be between 1 and {MAX_NPROC} (got {nproc})")
