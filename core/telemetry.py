"""Step records: what tensorscope knows about one optimizer step of a training run.

A :class:`StepRecord` is the unit that flows from the training process to the UI, to the
JSON Lines file of ``--record`` and to the doctor. It holds plain Python values only
(numbers, strings, lists, dicts), so it serialises to JSON as it is.

The JSON form of a step is ``{"type": "step", ...fields}``; ``None`` means "not known".
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StepRecord:
    """One optimizer step (or one evaluation pass when ``phase == "eval"``)."""

    step: int
    loss: float | None = None
    epoch: int | None = None
    phase: str = "train"
    """"train" for an optimizer step, "eval" for an evaluation pass."""
    wall_time: float | None = None
    """Seconds since the epoch (time.time()) when the step ended."""
    lr: list[float] = field(default_factory=list)
    """Learning rate of each param group, in group order."""
    grad_norm: float | None = None
    """Global L2 norm of all gradients before clipping."""
    grad_norm_clipped: float | None = None
    """Global L2 norm after clipping, when the script clips."""
    samples_per_s: float | None = None
    batch_size: int | None = None
    step_time_s: float | None = None
    data_time_s: float | None = None
    """Time spent waiting for the next batch (DataLoader) within this step."""
    compute_time_s: float | None = None
    memory: dict[str, Any] | None = None
    """{"kind": "cuda"|"mps"|"cpu-rss", "allocated", "reserved", "peak", "rss"} in bytes."""
    amp: dict[str, Any] | None = None
    """{"scale", "growth_tracker", "skipped", "autocast_dtype"} when a GradScaler is used.

    ``scale`` and ``growth_tracker`` are as ``update()`` left them after this iteration, so
    a skipped step shows the halved scale."""
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-module statistics from core/hooks.py, keyed by module path."""
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-parameter statistics (grad_norm, weight_norm, update_ratio, nonfinite_grad)."""
    signals: dict[str, Any] = field(default_factory=dict)
    """Observations the doctor reads (e.g. grads carried over, host syncs counted)."""
    rank: int | None = None
    """torch.distributed rank, None when not distributed."""

    def to_json(self) -> dict[str, Any]:
        # Shallow on purpose: fields hold plain values already, and asdict's deep copy cost
        # more than the rest of a step's bookkeeping. Serialise it before mutating it.
        # The instance dict holds exactly the fields, in field order (dataclass __init__).
        return {"type": "step", **self.__dict__}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "StepRecord":
        """Build a record from its JSON form; unknown keys are ignored (newer writers).

        Raises ValueError when a field holds the wrong kind of value (``"step": "x"``, a
        string learning rate): records come from files and sockets, and a chart that is
        handed a string fails far from here."""
        fields = {k: v for k, v in data.items() if k in _FIELD_NAMES}
        problem = _record_problem(fields)
        if problem is not None:
            raise ValueError(f"bad step record: {problem}")
        return cls(**fields)


_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(StepRecord))
_NUMBER_FIELDS = ("loss", "wall_time", "grad_norm", "grad_norm_clipped", "samples_per_s",
                  "step_time_s", "data_time_s", "compute_time_s")
_INT_FIELDS = ("epoch", "batch_size", "rank")
_DICT_FIELDS = ("memory", "amp", "modules", "params", "signals")
_NULLABLE = frozenset({"memory", "amp"})
_NESTED_NUMBERS = {"memory": ("allocated", "reserved", "peak", "rss"),
                   "amp": ("scale", "growth_tracker")}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _record_problem(fields: dict[str, Any]) -> str | None:
    """What is wrong with a step record's fields (as from_json takes them), or None.

    Checks what the UI computes with: the numbers it charts and the containers it walks.
    None is accepted wherever the field may be missing."""
    step = fields.get("step")
    if not isinstance(step, int) or isinstance(step, bool):
        return f"step must be a whole number, got {step!r}"[:120]
    for name in _NUMBER_FIELDS:
        value = fields.get(name)
        if value is not None and not _is_number(value):
            return f"{name} must be a number, got {value!r}"[:120]
    for name in _INT_FIELDS:
        value = fields.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            return f"{name} must be a whole number, got {value!r}"[:120]
    phase = fields.get("phase", "train")
    if phase not in ("train", "eval"):
        return f"phase must be train or eval, got {phase!r}"[:120]
    lr = fields.get("lr", [])
    if not isinstance(lr, list) or not all(v is None or _is_number(v) for v in lr):
        return f"lr must be a list of numbers, got {lr!r}"[:120]
    for name in _DICT_FIELDS:
        value = fields.get(name)
        # memory and amp may be null; the others default to {} and are walked as dicts.
        if (value is not None or name not in _NULLABLE) and not isinstance(value, dict):
            if name in fields:
                return f"{name} must be an object, got {value!r}"[:120]
    for name, keys in _NESTED_NUMBERS.items():
        inner = fields.get(name) or {}
        for key in keys:
            value = inner.get(key)
            if value is not None and not _is_number(value):
                return f"{name}.{key} must be a number, got {value!r}"[:120]
    for name in ("modules", "params"):
        for key, entry in (fields.get(name) or {}).items():
            if not isinstance(entry, dict):
                return f"{name}[{key!r}] must be an object, got {entry!r}"[:120]
    return None


def memory_snapshot(device: Any = None) -> dict[str, Any]:
    """Memory counters for ``device``, labelled by what they measure.

    CUDA: the caching allocator's allocated / reserved / peak bytes. MPS: its allocated and
    driver bytes. CPU: the process's resident set size (what `top` shows), since CPU tensors
    have no allocator counters of their own.
    """
    import torch

    dev = torch.device(device) if device is not None else None
    if dev is not None and dev.type == "cuda" and torch.cuda.is_available():
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return {
            "kind": "cuda",
            "device": f"cuda:{index}",
            "allocated": torch.cuda.memory_allocated(index),
            "reserved": torch.cuda.memory_reserved(index),
            "peak": torch.cuda.max_memory_allocated(index),
        }
    if dev is not None and dev.type == "mps" and torch.backends.mps.is_available():
        return {
            "kind": "mps",
            "device": "mps",
            "allocated": torch.mps.current_allocated_memory(),
            "reserved": torch.mps.driver_allocated_memory(),
            "peak": None,
        }
    return {"kind": "cpu-rss", "device": "cpu", "rss": _rss_bytes()}


_PROCESS: Any = None
_STATM: tuple[int, int] | None = None
"""(pid, fd) of this process's /proc/self/statm, kept open: reading it is ~1.5 µs, where
psutil's memory_info() is ~12 µs warm and several times that right after a step's kernels.
Keyed by pid: a forked child (a DataLoader worker) must not read its parent's file."""


def _rss_bytes() -> int | None:
    global _PROCESS, _STATM
    pid = os.getpid()
    if _STATM is None or _STATM[0] != pid:
        try:
            _STATM = (pid, os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC))
        except (OSError, AttributeError):
            _STATM = (pid, -1)  # not Linux: psutil from now on
    if _STATM[1] >= 0:
        try:
            # statm: sizes in pages; the second field is the resident set.
            return int(os.pread(_STATM[1], 128, 0).split()[1]) * _PAGE
        except (OSError, ValueError, IndexError, AttributeError):
            _STATM = (pid, -1)
    try:
        if _PROCESS is None:
            import psutil

            _PROCESS = psutil.Process()  # kept: building one per step costs more than reading
        return int(_PROCESS.memory_info().rss)
    except Exception:  # psutil missing or the platform refuses: memory is then unknown
        return None


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def amp_state(scaler: Any) -> dict[str, Any] | None:
    """A GradScaler's state: scale, growth tracker, and whether it is enabled.

    Reading the scale is a host sync; callers do it once per step at most. Whether the
    step was skipped is known only before ``update()`` (the per-optimizer found-inf is
    cleared there), so callers that can see it pass it in ``skipped`` themselves.
    """
    if scaler is None or not getattr(scaler, "is_enabled", lambda: False)():
        return None
    scale = getattr(scaler, "_scale", None)
    tracker = getattr(scaler, "_growth_tracker", None)
    return {
        "scale": float(scale.item()) if scale is not None else float(scaler.get_scale()),
        "growth_tracker": int(tracker.item()) if tracker is not None else None,
        "skipped": None,
        "autocast_dtype": None,
    }


def autocast_dtype() -> str | None:
    """The autocast dtype in force right now ("bfloat16", ...), None when autocast is off.

    Meaningful only while a forward runs, so callers read it from a forward hook.
    """
    import torch

    for device_type in ("cuda", "cpu", "mps", "xpu"):
        try:
            if torch.is_autocast_enabled(device_type):
                return str(torch.get_autocast_dtype(device_type)).replace("torch.", "")
        except Exception:  # a device type this build does not know: not in use then
            continue
    return None


def scaler_steps(scaler: Any, optimizer: Any) -> bool:
    """Whether ``scaler`` is stepping ``optimizer`` in this iteration: its per-optimizer
    state holds the optimizer from unscale_ or step until update() (after an AMP phase the
    same optimizer steps on its own, and its gradients are no longer scaled)."""
    states = getattr(scaler, "_per_optimizer_states", None)
    return True if states is None else id(optimizer) in states  # (no such field: trust it)


def found_inf(scaler: Any, optimizer: Any) -> bool | None:
    """Whether ``scaler`` found an inf/NaN in ``optimizer``'s grads this iteration.

    GradScaler keeps the per-optimizer found-inf tensors only between ``unscale_``/``step``
    and ``update()``; this reads them in that window (an optimizer step hook is inside it)
    and returns None outside it. One host sync.
    """
    try:
        state = scaler._per_optimizer_states.get(id(optimizer))
        if not state or not state.get("found_inf_per_device"):
            return None
        return bool(sum(float(v.item()) for v in state["found_inf_per_device"].values()))
    except Exception:  # private layout changed in another torch: unknown, never a crash
        return None


# --- the ring buffer and the file sink -------------------------------------------------

class Recorder:
    """The last ``capacity`` step records in memory, passed on to optional sinks.

    ``add`` never raises: a sink that fails is counted in ``sink_errors`` and kept (a full
    disk must not stop the training it watches).
    """

    def __init__(self, capacity: int = 10_000, sinks: list[Any] | None = None) -> None:
        from collections import deque

        self.records: deque[StepRecord] = deque(maxlen=capacity)
        self.sinks = list(sinks or [])
        self.total = 0
        """Records ever added (the ring buffer keeps the last ``capacity``)."""
        self.sink_errors = 0

    def add(self, record: StepRecord) -> None:
        self.records.append(record)
        self.total += 1
        for sink in self.sinks:
            try:
                sink(record)
            except Exception:  # counted; the training goes on
                self.sink_errors += 1

    __call__ = add

    def snapshot(self) -> list[StepRecord]:
        """A copy of the buffered records, oldest first."""
        return list(self.records)


class JsonlSink:
    """Appends one JSON object per line to a file, flushed every line.

    A crash loses at most the line being written; :func:`read_jsonl` reads the rest.
    Steps are ``{"type": "step", ...}``; :meth:`event` writes run/error/end lines.
    """

    def __init__(self, path: Any, mode: str = "w") -> None:
        import os

        self.path = os.fspath(path)
        try:
            # "w": a record file holds one run (replay would mix two runs otherwise).
            self._file = open(self.path, mode, encoding="utf-8")
        except OSError as exc:
            from tensorscope.errors import UserError

            raise UserError(f"cannot write the record file {self.path}: {exc.strerror}") from exc

    def __call__(self, record: StepRecord) -> None:
        self.write(record.to_json())

    def event(self, kind: str, **fields: Any) -> None:
        self.write({"type": kind, **fields})

    def write(self, data: dict[str, Any]) -> None:
        import json

        if self._file.closed:
            return
        self._file.write(json.dumps(data, default=_json_default, allow_nan=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def _json_default(value: Any) -> Any:
    # Tensors or numpy scalars that slipped into a record: their float value, not a crash.
    try:
        return float(value)
    except Exception:
        return repr(value)


def read_jsonl(path: Any) -> tuple[list[StepRecord], dict[str, Any], int]:
    """Read a record file: ``(step records, run metadata, lines dropped)``.

    Metadata merges the ``run`` line with ``error`` (``meta["error"]``) and ``end``
    (``meta["exit_code"]``). Lines that are not complete JSON objects (a truncated last
    line, garbage) are skipped and counted, never fatal.
    """
    import json
    import os

    path = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        from tensorscope.errors import UserError

        raise UserError(f"no record file {path}") from None
    except OSError as exc:
        from tensorscope.errors import UserError

        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    records: list[StepRecord] = []
    meta: dict[str, Any] = {}
    dropped = 0
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            data = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            dropped += 1
            continue
        if not isinstance(data, dict):
            dropped += 1
            continue
        kind = data.get("type")
        if kind == "step":
            try:
                records.append(StepRecord.from_json(data))
            except (TypeError, ValueError):  # a field of the wrong kind: this line only
                dropped += 1
        elif kind == "run":
            meta.update({k: v for k, v in data.items() if k != "type"})
        elif kind == "model":
            meta["model"] = {k: v for k, v in data.items() if k != "type"}
        elif kind == "error":
            meta["error"] = {k: v for k, v in data.items() if k != "type"}
            if data.get("rank") is not None:  # a multi-rank run: keep each rank's own
                meta.setdefault("rank_errors", {})[data["rank"]] = meta["error"]
        elif kind == "end":
            meta["exit_code"] = data.get("exit_code")
            meta["ended"] = True
            meta["end"] = {k: v for k, v in data.items() if k not in ("type", "exit_code")}
            if data.get("failures"):  # a multi-rank run: every failed rank (run --nproc)
                meta["failures"] = data["failures"]
                root = next((f for f in data["failures"] if f.get("root_cause")), {})
                if root.get("rank") in meta.get("rank_errors", {}):
                    meta["error"] = meta["rank_errors"][root["rank"]]
        else:
            dropped += 1
    return records, meta, dropped
