"""Reading the step records of many ranks as one run: per-rank figures, stragglers, sync.

Every :class:`~tensorscope.telemetry.StepRecord` of a distributed run carries its ``rank``.
This module turns a mixed list of them into what the Training screen shows for a
multi-rank run, and what ``--json`` prints:

- :func:`per_rank`: step time, samples/s and memory of each rank (medians over the last
  steps, so one slow step does not swing the figure);
- :func:`mean_loss_by_step`: the loss of each step averaged over the ranks that reported it
  (under DDP each rank sees its own shard of the batch, so the mean is the batch's loss);
- :func:`find_stragglers`: a rank consistently slower than the others;
- :func:`param_checksum` / :func:`compare_checksums`: whether the ranks' parameters are
  still the same after the optimizer step, from two numbers per rank and step.

Nothing here syncs a device or talks to another process: it reads records.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from tensorscope.telemetry import StepRecord

# Straggler rule (see find_stragglers). A rank is slow in a window when its median step time
# exceeds the median of the other ranks by this factor. Step times of one rank wobble by
# ~5-10% from step to step on a shared machine (OS scheduling, garbage collection,
# allocator); a median over a window absorbs single spikes, and 15% sits clear of that
# noise while still catching a rank that costs the job real time: in synchronous data
# parallel training every rank waits for the slowest, so one rank 15% slower costs the whole
# job ~13% of its throughput.
STRAGGLER_RATIO = 1.15
STRAGGLER_WINDOW = 10
"""Steps per window; the median of ten absorbs a one-off spike."""
STRAGGLER_MAJORITY = 0.5
"""Slow in more than this share of the windows means "consistently" slow."""
STRAGGLER_MIN_WINDOWS = 3
"""Fewer windows than this are not enough evidence to call a rank a straggler."""
STRAGGLER_MIN_GAP_S = 1e-3
"""A rank 2x slower at 10 microseconds is noise, not a straggler: the gap must also exceed this."""

# Param-sync tolerance. DDP starts every rank from rank 0's parameters and all-reduces the
# gradients, so in-sync ranks hold bitwise-equal parameters and compute bitwise-equal
# checksums (same kernels, same order). The tolerance only absorbs ranks on different
# hardware summing in a different order; a real divergence (a rank skipping a step, a
# parameter outside DDP, a different learning rate) moves the sums far beyond it.
SYNC_RTOL = 1e-6
SYNC_ATOL = 1e-9


def _train(records: Iterable[StepRecord]) -> list[StepRecord]:
    return [r for r in records if r.phase == "train" and r.rank is not None]


def ranks_of(records: Iterable[StepRecord]) -> list[int]:
    """The ranks that reported at least one record, in order."""
    return sorted({r.rank for r in records if r.rank is not None})


def _median(values: Sequence[float]) -> float | None:
    clean = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(clean) if clean else None


def _memory_bytes(memory: dict[str, Any] | None) -> tuple[int | None, str | None]:
    """The one memory figure worth a column: allocated on an accelerator, RSS on CPU."""
    if not memory:
        return None, None
    kind = memory.get("kind")
    value = memory.get("rss") if kind == "cpu-rss" else memory.get("allocated")
    return (int(value) if value is not None else None), kind


@dataclass(frozen=True)
class RankFigures:
    """One rank's recent figures (medians over the last ``window`` steps)."""

    rank: int
    steps: int
    """Train steps this rank reported."""
    last_step: int | None
    step_time_s: float | None
    samples_per_s: float | None
    memory_bytes: int | None
    """Allocated bytes on an accelerator, resident set size on CPU (see memory_kind)."""
    memory_kind: str | None
    peak_bytes: int | None


def per_rank(records: Iterable[StepRecord], window: int = 20) -> dict[int, RankFigures]:
    """Each rank's step time, samples/s and memory, from its last ``window`` steps."""
    by_rank: dict[int, list[StepRecord]] = defaultdict(list)
    for rec in _train(records):
        by_rank[rec.rank].append(rec)
    out = {}
    for rank in sorted(by_rank):
        recs = sorted(by_rank[rank], key=lambda r: r.step)
        recent = recs[-window:]
        last_mem = next((r.memory for r in reversed(recs) if r.memory), None)
        mem, kind = _memory_bytes(last_mem)
        peak = last_mem.get("peak") if last_mem else None
        out[rank] = RankFigures(
            rank=rank,
            steps=len(recs),
            last_step=recs[-1].step if recs else None,
            step_time_s=_median([r.step_time_s for r in recent]),
            samples_per_s=_median([r.samples_per_s for r in recent]),
            memory_bytes=mem,
            memory_kind=kind,
            peak_bytes=int(peak) if peak is not None else None,
        )
    return out


@dataclass(frozen=True)
class LossPoint:
    """The loss of one step averaged over the ranks that reported it."""

    step: int
    loss: float
    ranks: int
    """How many ranks contributed (fewer than the world size while a step is in flight)."""


def mean_loss_by_step(records: Iterable[StepRecord]) -> list[LossPoint]:
    """Mean loss over ranks for each step, in step order; non-finite losses are kept as NaN.

    A NaN on one rank makes the step's mean NaN on purpose: the run is broken there.
    """
    by_step: dict[int, list[float]] = defaultdict(list)
    for rec in _train(records):
        if rec.loss is not None:
            by_step[rec.step].append(float(rec.loss))
    return [
        LossPoint(step, math.fsum(vals) / len(vals), len(vals))
        for step, vals in sorted(by_step.items())
    ]


@dataclass(frozen=True)
class Straggler:
    """A rank slower than the others in most windows of steps."""

    rank: int
    ratio: float
    """Median over windows of (its step time / the other ranks' median step time)."""
    slow_windows: int
    windows: int
    metric: str

    def describe(self) -> str:
        label = self.metric.removesuffix("_s").replace("_", " ")
        return (
            f"rank {self.rank} is a straggler: {label} {self.ratio:.2f}x the other ranks "
            f"in {self.slow_windows} of {self.windows} windows"
        )


def find_stragglers(
    records: Iterable[StepRecord],
    *,
    metric: str = "step_time_s",
    window: int = STRAGGLER_WINDOW,
    ratio: float = STRAGGLER_RATIO,
    majority: float = STRAGGLER_MAJORITY,
    min_windows: int = STRAGGLER_MIN_WINDOWS,
    min_gap_s: float = STRAGGLER_MIN_GAP_S,
) -> list[Straggler]:
    """Ranks whose ``metric`` is consistently above the others' (thresholds: module top).

    Steps are cut into windows of ``window`` consecutive step numbers that every rank
    reported. In each window a rank is slow when its median exceeds ``ratio`` times the
    median of the other ranks' medians (and by more than ``min_gap_s``); a rank slow in more than ``majority`` of at least
    ``min_windows`` windows is a straggler.

    Which metric: under synchronous DDP the fast ranks wait for the slow one inside the
    gradient all-reduce, so the period between optimizer steps evens out across ranks; a
    straggler then shows in the time spent *before* that wait (``data_time_s`` for a slow
    loader, ``compute_time_s`` where measured). :func:`find_all_stragglers` checks each.
    """
    values: dict[int, dict[int, float]] = defaultdict(dict)
    for rec in _train(records):
        v = getattr(rec, metric, None)
        if v is not None and math.isfinite(v):
            values[rec.rank][rec.step] = float(v)
    ranks = sorted(values)
    if len(ranks) < 2:
        return []
    common = sorted(set.intersection(*(set(values[r]) for r in ranks)))
    windows = [common[i : i + window] for i in range(0, len(common) - window + 1, window)]
    if len(windows) < min_windows:
        return []
    slow = defaultdict(int)
    ratios: dict[int, list[float]] = defaultdict(list)
    for steps in windows:
        medians = {r: statistics.median(values[r][s] for s in steps) for r in ranks}
        for r in ranks:
            others = statistics.median(medians[o] for o in ranks if o != r)
            if others <= 0:
                continue
            q = medians[r] / others
            ratios[r].append(q)
            if q > ratio and medians[r] - others > min_gap_s:
                slow[r] += 1
    out = []
    for r in ranks:
        if slow[r] > majority * len(windows):
            out.append(Straggler(r, statistics.median(ratios[r]), slow[r], len(windows), metric))
    return out


STRAGGLER_METRICS = ("step_time_s", "compute_time_s", "data_time_s")


def find_all_stragglers(records: Sequence[StepRecord], **kwargs: Any) -> list[Straggler]:
    """:func:`find_stragglers` over each timing the records carry; one entry per rank."""
    found: dict[int, Straggler] = {}
    for metric in STRAGGLER_METRICS:
        for s in find_stragglers(records, metric=metric, **kwargs):
            found.setdefault(s.rank, s)
    return [found[r] for r in sorted(found)]


# --- parameter sync --------------------------------------------------------------------


def param_checksum(params: Iterable[Any]):
    """``[sum, sum of squares]`` over every element of ``params``, as a tensor on their device.

    Two reductions per parameter, summed on the device in float64 where the device has it
    (float32 on MPS); no host sync happens here. The caller fetches it once, with the rest
    of the step's figures (``.tolist()``), and stores it in
    ``record.signals["param_checksum"]``. Returns None when there are no parameters.
    Parameters on several devices are reduced per device and added on the first one.
    """
    import torch

    per_device: dict[Any, list] = defaultdict(list)
    with torch.no_grad():
        for p in params:
            if p is None or p.numel() == 0 or not (p.is_floating_point() or p.is_complex()):
                continue
            t = p.detach()
            if t.is_complex():
                t = torch.view_as_real(t)
            dtype = torch.float32 if t.device.type == "mps" else torch.float64
            t = t.to(dtype)
            per_device[t.device].append(torch.stack((t.sum(), (t * t).sum())))
        if not per_device:
            return None
        parts = [torch.stack(v).sum(dim=0) for v in per_device.values()]
        first = parts[0].device
        total = parts[0]
        for part in parts[1:]:
            total = total + part.to(first, dtype=total.dtype)
        return total


@dataclass(frozen=True)
class SyncMismatch:
    """A step where the ranks' parameter checksums disagree."""

    step: int
    checksums: dict[int, tuple[float, ...]]
    max_rel_diff: float

    def describe(self) -> str:
        shown = ", ".join(f"rank {r}: sum {c[0]:.9g}" for r, c in sorted(self.checksums.items()))
        return f"step {self.step}: parameters differ across ranks ({shown})"


@dataclass(frozen=True)
class SyncReport:
    """What the checksum comparison found over a run."""

    checked_steps: int
    """Steps where at least two ranks reported a checksum."""
    mismatches: list[SyncMismatch] = field(default_factory=list)

    @property
    def in_sync(self) -> bool | None:
        """True/False once something was compared; None when nothing could be."""
        if self.checked_steps == 0:
            return None
        return not self.mismatches

    @property
    def first_divergence(self) -> int | None:
        return self.mismatches[0].step if self.mismatches else None


def _close(a: float, b: float, rtol: float, atol: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= atol + rtol * max(abs(a), abs(b))


def compare_checksums(
    records: Iterable[StepRecord], *, rtol: float = SYNC_RTOL, atol: float = SYNC_ATOL
) -> SyncReport:
    """Flag the steps where ranks' ``signals["param_checksum"]`` differ beyond tolerance."""
    by_step: dict[int, dict[int, tuple[float, ...]]] = defaultdict(dict)
    for rec in _train(records):
        value = rec.signals.get("param_checksum") if rec.signals else None
        if isinstance(value, (list, tuple)) and value:
            by_step[rec.step][rec.rank] = tuple(float(v) for v in value)
    checked = 0
    mismatches = []
    for step in sorted(by_step):
        sums = by_step[step]
        if len(sums) < 2:
            continue
        checked += 1
        ranks = sorted(sums)
        ref = sums[ranks[0]]
        worst = 0.0
        agree = True
        for r in ranks[1:]:
            other = sums[r]
            if len(other) != len(ref):
                agree = False
                worst = math.inf
                continue
            for a, b in zip(ref, other):
                if not _close(a, b, rtol, atol):
                    agree = False
                scale = max(abs(a), abs(b), atol)
                diff = abs(a - b) / scale if math.isfinite(a) and math.isfinite(b) else math.inf
                if not (math.isnan(a) and math.isnan(b)):
                    worst = max(worst, diff)
        if not agree:
            mismatches.append(SyncMismatch(step, dict(sums), worst))
    return SyncReport(checked, mismatches)


@dataclass(frozen=True)
class RankSummary:
    """Everything the rank-aware Training screen draws, computed from one list of records."""

    ranks: list[int]
    figures: dict[int, RankFigures]
    loss: list[LossPoint]
    stragglers: list[Straggler]
    sync: SyncReport


def summarize(records: Sequence[StepRecord]) -> RankSummary:
    """The rank-aware view of ``records`` (records without a rank are left out)."""
    recs = _train(records)
    return RankSummary(
        ranks=ranks_of(recs),
        figures=per_rank(recs),
        loss=mean_loss_by_step(recs),
        stragglers=find_all_stragglers(recs),
        sync=compare_checksums(recs),
    )
