"""dataloader-throughput: when each sample costs time to produce, worker processes load the
next batches while the loop works; measured samples/s for num_workers 0 vs 2, pin_memory."""

from __future__ import annotations

import time

import torch
from torch.utils.data import DataLoader, Dataset

from tensorscope.demos._scenario import Observation, Scenario

SAMPLES = 256
COST_S = 0.002

LESSON = """\
**Loading is work too.** With `num_workers=0` the training process itself reads and
decodes every sample, so the model waits. With `num_workers=N`, N processes prepare
batches in the background. They cost a start-up (a new process each, every epoch unless
`persistent_workers=True`) and memory, so more is not always faster — measure.

`pin_memory=True` puts batches in page-locked memory so that `.to("cuda",
non_blocking=True)` can overlap the copy with compute; without a GPU it has nothing to
do. Here each sample costs ~2 ms (a sleep standing in for reading and decoding a file);
the summary gives samples/s for each setting on this machine.
"""

CODE = """\
loader = DataLoader(ds, batch_size=32, num_workers=0)     # the main process loads
for xb, yb in loader:
    ...
"""

FIXED = """\
loader = DataLoader(ds, batch_size=32, num_workers=2,
                    pin_memory=torch.cuda.is_available(),
                    persistent_workers=True)
for xb, yb in loader:
    xb = xb.to(device, non_blocking=True)
    ...
"""


class SlowDataset(Dataset):
    """Each item sleeps COST_S: a stand-in for file reading and decoding (no real I/O)."""

    def __len__(self) -> int:
        return SAMPLES

    def __getitem__(self, i: int):
        time.sleep(COST_S)
        return torch.full((16,), float(i)), i % 2


def _rate(num_workers: int, pin: bool) -> float:
    loader = DataLoader(SlowDataset(), batch_size=32, num_workers=num_workers, pin_memory=pin)
    start = time.perf_counter()
    seen = sum(len(yb) for _, yb in loader)
    return round(seen / (time.perf_counter() - start), 1)


def measure(fixed: bool) -> Observation:
    pin = torch.cuda.is_available()
    facts = {"samples": SAMPLES, "cost_per_sample_ms": COST_S * 1000,
             "samples_per_s_workers_0": _rate(0, False),
             "samples_per_s_workers_2": _rate(2, pin),
             "pin_memory_used": pin,
             "note": "pin_memory needs a GPU; off here" if not pin else "pin_memory on (CUDA)"}
    facts["speedup_2_vs_0"] = round(facts["samples_per_s_workers_2"] / facts["samples_per_s_workers_0"], 2)
    return Observation(facts)


SCENARIO = Scenario(
    name="dataloader-throughput", title="DataLoader throughput: num_workers and pin_memory",
    lesson=LESSON, code=CODE, fixed_code=None, screens=("demos",),
    measure=measure, finding=None,
)
