"""Step records: what tensorscope knows about one optimizer step of a training run.

A :class:`StepRecord` is the unit that flows from the training process to the UI, to the
JSON Lines file of ``--record`` and to the doctor. It holds plain Python values only
(numbers, strings, lists, dicts), so it serialises to JSON as it is.

The JSON form of a step is ``{"type": "step", ...fields}``; ``None`` means "not known".
"""

from __future__ import annotations

import dataclasses
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
    """{"scale", "growth_tracker", "skipped", "autocast_dtype"} when a GradScaler is used."""
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-module statistics from core/hooks.py, keyed by module path."""
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-parameter statistics (grad_norm, weight_norm, update_ratio, nonfinite_grad)."""
    signals: dict[str, Any] = field(default_factory=dict)
    """Observations the doctor reads (e.g. grads carried over, host syncs counted)."""
    rank: int | None = None
    """torch.distributed rank, None when not distributed."""

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {"type": "step", **data}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "StepRecord":
        """Build a record from its JSON form; unknown keys are ignored (newer writers)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


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


def _rss_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:  # psutil missing or the platform refuses: memory is then unknown
        return None


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
