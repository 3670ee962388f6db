"""Launching N ranks through torch.distributed's own engine, and reading a rank's identity.

``tensorscope run --nproc N`` does not start processes by hand: it calls
:func:`torch.distributed.launcher.api.elastic_launch`, the engine behind ``torchrun``, with
the settings ``torchrun --standalone --nproc-per-node N`` uses (one node, c10d rendezvous on
this host, no restarts). Each rank gets the usual ``RANK`` / ``LOCAL_RANK`` / ``WORLD_SIZE`` /
``MASTER_ADDR`` / ``MASTER_PORT`` environment, exactly as under ``torchrun``.

When a rank fails, the launcher stops the others and raises ``ChildFailedError``; this module
turns that into a :class:`LaunchResult` that names every failed rank with its exit code (or
signal) and the first line of its error, and returns ``torchrun``'s exit code (1).

    >>> result = launch(2, ["train.py", "--epochs", "1"])          # doctest: +SKIP
    >>> result.exit_code, [f.describe() for f in result.failures]   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import uuid
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Sequence

from tensorscope.errors import UserError

# torchrun's own exit code when a child fails (torch/distributed/run.py re-raises
# ChildFailedError and the process ends with status 1).
LAUNCHER_FAILED = 1

# One launch at a time may change os.environ (the launcher copies it into every rank).
_ENV_LOCK = threading.Lock()


@dataclass(frozen=True)
class RankInfo:
    """Who this process is in a torch.distributed job, read from the launcher's environment."""

    rank: int
    world_size: int
    local_rank: int


def rank_from_env(environ: Mapping[str, str] | None = None) -> RankInfo | None:
    """The rank set by torchrun / elastic_launch, or None when not started by one.

    Read from the environment (not from torch.distributed), so it is known before the
    script calls ``init_process_group`` and without importing torch.
    """
    env = os.environ if environ is None else environ
    try:
        rank = int(env["RANK"])
        world = int(env["WORLD_SIZE"])
    except (KeyError, ValueError):
        return None
    try:
        local = int(env.get("LOCAL_RANK", rank))
    except ValueError:
        local = rank
    return RankInfo(rank=rank, world_size=world, local_rank=local)


@dataclass(frozen=True)
class RankFailure:
    """One rank that ended badly, as the launcher saw it."""

    rank: int
    local_rank: int
    exitcode: int
    message: str
    """First meaningful line of the rank's error (from its error file, or the launcher's)."""
    error_file: str | None
    root_cause: bool = False
    """True for the first failure the launcher observed (the likely cause of the others)."""

    @property
    def signal_name(self) -> str | None:
        """``SIGABRT`` etc. when the rank was killed by a signal (negative exit code)."""
        if self.exitcode >= 0:
            return None
        try:
            return signal.Signals(-self.exitcode).name
        except ValueError:
            return f"signal {-self.exitcode}"

    def describe(self) -> str:
        how = self.signal_name or f"exit code {self.exitcode}"
        cause = " (first failure)" if self.root_cause else ""
        text = f"rank {self.rank} failed{cause}: {how}"
        message = self.message if len(self.message) <= 160 else self.message[:157] + "..."
        return f"{text} — {message}" if message else text

    def to_json(self) -> dict:
        return {
            "type": "rank_failure",
            "rank": self.rank,
            "local_rank": self.local_rank,
            "exitcode": self.exitcode,
            "signal": self.signal_name,
            "message": self.message,
            "error_file": self.error_file,
            "root_cause": self.root_cause,
        }


@dataclass
class LaunchResult:
    """How a multi-rank launch ended."""

    exit_code: int
    nproc: int
    failures: list[RankFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "")


def _message_of(failure) -> str:
    """The rank's own error when it wrote an error file (the traceback's last line)."""
    data = getattr(failure, "error_file_data", None) or {}
    message = data.get("message") if isinstance(data, dict) else None
    if isinstance(message, dict):
        # ErrorHandler format: {"message": {"message": "RuntimeError: ...", "extraInfo": ...}}
        text = str(message.get("message", ""))
        return _first_line(text)
    if isinstance(message, str) and message:
        return _first_line(message)
    text = str(getattr(failure, "message", "") or "")
    # Without an error file the launcher has only placeholders ("<NONE>", a link to its docs).
    if "https://" in text or text.strip() in {"<NONE>", "<N/A>"}:
        return ""
    return _first_line(text)


def failures_from(exc) -> list[RankFailure]:
    """Every failed rank in a ChildFailedError, the first observed failure first."""
    try:
        root_rank, _ = exc.get_first_failure()
    except Exception:  # an empty failures dict: nothing to single out
        root_rank = None
    out = []
    for rank, failure in exc.failures.items():
        error_file = getattr(failure, "error_file", None)
        out.append(
            RankFailure(
                rank=int(rank),
                local_rank=int(getattr(failure, "local_rank", rank)),
                exitcode=int(failure.exitcode),
                message=_message_of(failure),
                error_file=error_file if error_file and error_file != "<N/A>" else None,
                root_cause=rank == root_rank,
            )
        )
    out.sort(key=lambda f: (not f.root_cause, f.rank))
    return out


@contextlib.contextmanager
def _quiet_elastic_logs(quiet: bool) -> Iterator[None]:
    """Hold back torch.distributed.elastic's log lines (each of its loggers sets its own level)."""
    if not quiet:
        yield
        return
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
               if name.startswith("torch.distributed")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def launch(
    nproc: int,
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    run_id: str | None = None,
    monitor_interval: float = 0.1,
    quiet: bool = False,
) -> LaunchResult:
    """Run ``python ARGS...`` as ``nproc`` ranks on this host through ``elastic_launch``.

    ``args`` follow the interpreter: ``["train.py", "--lr", "0.1"]`` or
    ``["-m", "some.module", ...]``. ``env`` adds variables for every rank (the launcher copies
    this process's environment when it starts the ranks, so they are set here for that
    moment and restored after). Blocks until every rank has ended.

    ``quiet=True`` (a launch from inside the TUI, where stderr is the screen): the launcher's
    own log lines are held back and the ranks' output goes to files in the launcher's log
    folder; failures still come back in the result, with their messages.
    """
    if nproc < 1:
        raise UserError(f"--nproc must be at least 1 (got {nproc})")
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    logs_specs = None
    if quiet:
        from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std

        logs_specs = DefaultLogsSpecs(redirects=Std.ALL)
    config = LaunchConfig(
        logs_specs=logs_specs,
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=run_id or f"tensorscope-{uuid.uuid4().hex[:12]}",
        # What `torchrun --standalone` uses: a c10d store on this host, port 0 so the OS
        # picks a free one (no window between choosing a port and binding it).
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",
        max_restarts=0,
        monitor_interval=monitor_interval,
    )
    extra = dict(env or {})
    if nproc > 1 and "OMP_NUM_THREADS" not in os.environ:
        # torchrun does this too (run.py): N ranks each using every core thrash the machine.
        extra.setdefault("OMP_NUM_THREADS", "1")
    with _ENV_LOCK, _quiet_elastic_logs(quiet):
        saved = {k: os.environ.get(k) for k in extra}
        os.environ.update({k: str(v) for k, v in extra.items()})
        try:
            elastic_launch(config, entrypoint=sys.executable)(*args)
        except ChildFailedError as exc:
            return LaunchResult(LAUNCHER_FAILED, nproc, failures_from(exc))
        except SignalException as exc:
            # The launcher was told to stop (Ctrl-C, SIGTERM): it has stopped the ranks.
            return LaunchResult(128 + int(exc.sigval), nproc)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    return LaunchResult(0, nproc)
