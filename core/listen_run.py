"""Runs that tensorscope did not start: ``torchrun`` (or any launcher) connecting by address.

``tensorscope listen`` owns an event server and prints two environment variables (the
same ones ``tensorscope run`` hands its own child: ``TENSORSCOPE_ADDRESS`` and
``TENSORSCOPE_AUTHKEY``). Any process started with them and with tensorscope's bootstrap —
for example ``torchrun --nproc-per-node 2 -m tensorscope._bootstrap train.py`` — streams its
step records here, each with its rank. :class:`ListenRun` is that source for the Training
screen and for ``--record``: a live run whose processes are not its children, so it cannot
pause or stop them, and it ends when every process that said hello has said goodbye.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from tensorscope.runsource import LiveRun

END_GRACE_S = 1.0
"""After the last known process ended, wait this long for a late rank to say hello."""


class ListenRun(LiveRun):
    """Step records from processes that connected by address (torchrun, a cluster job)."""

    def __init__(self, *, record: str | None = None) -> None:
        self._started: set[Any] = set()
        self._finished: dict[Any, dict[str, Any]] = {}
        self._last_end = 0.0
        super().__init__("(listening)", [], record=record, capture_output=False)
        self._meta["listening"] = True
        self._watcher = threading.Thread(target=self._watch_ends, daemon=True,
                                         name="tensorscope-listen")

    def start(self) -> "ListenRun":
        self._watcher.start()
        self._bump()
        return self

    def _key(self, event: dict[str, Any]) -> Any:
        return event.get("rank") if event.get("rank") is not None else event.get("pid")

    def _handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "run":
            with self._lock:
                # One process per rank, or per pid outside a launcher; "end" carries the rank.
                self._started.add(self._key(event))
                if event.get("script"):
                    self.script = event["script"]
        if kind == "end":
            with self._lock:
                self._finished[event.get("rank", event.get("pid"))] = event
                self._last_end = time.monotonic()
                self._end = {
                    "exit_code": max((int(e.get("exit_code") or 0) for e in self._finished.values()),
                                     default=0),
                    "dropped_events": sum(int(e.get("dropped_events") or 0)
                                          for e in self._finished.values()),
                    "hook_errors": sum(int(e.get("hook_errors") or 0)
                                       for e in self._finished.values()),
                }
                self._version += 1
            return
        if kind == "error":
            with self._lock:
                if self._error is None:  # the first crash is the one that explains the rest
                    self._error = {k: v for k, v in event.items() if k != "type"}
                self._version += 1
            if self._sink is not None:
                self._sink.write(event)
            return
        super()._handle(event)

    def _watch_ends(self) -> None:
        """The run is over once every process that started has ended (and none came late)."""
        while not self._ended.is_set():
            time.sleep(0.1)
            with self._lock:
                done = (bool(self._started) and set(self._finished) >= self._started
                        and time.monotonic() - self._last_end >= END_GRACE_S)
                if not done:
                    continue
                self._exit_code = int((self._end or {}).get("exit_code") or 0)
                self._version += 1
            if self._sink is not None:
                self._sink.event("end", exit_code=self._exit_code)
                self._sink.close()
            self._ended.set()

    @property
    def running(self) -> bool:
        return bool(self._started) and self._exit_code is None

    no_pause_reason = "this run was started elsewhere (torchrun): tensorscope cannot pause it"

    def pause(self) -> bool:
        return False

    def resume(self) -> bool:
        return False

    def stop(self, timeout: float = 5.0) -> None:
        """Not ours to stop: the processes belong to the launcher that started them."""

    def snapshot(self):
        from dataclasses import replace

        snap = super().snapshot()
        with self._lock:
            waiting = not self._started
            ranks = len(self._started)
        label = f"{snap.label} (listening)" if not waiting else "waiting for a run to connect"
        state = snap.state
        if waiting:
            state = "starting"
        elif self._exit_code is None:
            state = "running"
        return replace(snap, label=label, state=state,
                       meta={**snap.meta, "processes": ranks})
