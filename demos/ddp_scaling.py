"""ddp-scaling: the same model trained by 1 and by N processes under DistributedDataParallel;
the scaling-efficiency table, and where the overhead goes (gradient all-reduce vs compute).

Both runs go through torch.distributed's own launcher (tensorscope.distributed.launch, the
engine behind torchrun): gloo on CPU, NCCL when there is a GPU per rank. Each rank trains
with a DDP communication hook that wraps the default all-reduce and times its future, so the
table can say how long gradients spent in all-reduce per step. This file is also the ranks'
program: ``python -m tensorscope.demos.ddp_scaling --worker OUT.json STEPS BACKEND``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time

from tensorscope.demos._scenario import Observation, Scenario

NPROC = 2
STEPS = 30
WARMUP = 5
BATCH_PER_RANK = 64
WIDTH = 512

LESSON = """\
**More processes, more samples per second — minus the talking.** Under
`DistributedDataParallel` every rank runs the whole model on its own slice of the data, then
the ranks *all-reduce* their gradients so that every copy takes the same optimizer step. Each
rank keeps its batch size, so N ranks process N times the samples per step (weak scaling);
what they pay is the all-reduce (bytes ~ 2x the gradients, over gloo's TCP on CPU or NCCL's
links on GPU) and the wait for the slowest rank.

**Scaling efficiency** = samples/s at N ranks / (N x samples/s at 1 rank). 100% means the
all-reduce is free (fully hidden behind the backward pass, which DDP tries by reducing
gradient *buckets* as soon as they are ready). The table below measures it here, with the
all-reduce timed by a communication hook (launch to completion, summed over buckets) next
to the step time. On a small CPU machine N ranks also share the same few cores, so compute
itself slows down: read the per-step compute column too.
"""

CODE = """\
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel as DDP

dist.init_process_group("gloo")               # "nccl" with one GPU per rank
model = DDP(make_model())
times = []

def timed_allreduce(state, bucket):           # wraps DDP's default gradient all-reduce
    start = time.perf_counter()
    fut = default_hooks.allreduce_hook(None, bucket)
    def done(f):
        times.append(time.perf_counter() - start)
        return f.value()[0]
    return fut.then(done)

model.register_comm_hook(None, timed_allreduce)
# launched by: torchrun --nproc-per-node 2 train.py   (here: tensorscope.distributed.launch)
"""


def _worker(out_path: str, steps: int, backend: str) -> None:
    """One rank: train STEPS steps under DDP, time steps and all-reduce, rank 0 writes JSON."""
    import torch
    import torch.distributed as dist
    from torch import nn
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
    from torch.nn.parallel import DistributedDataParallel as DDP

    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    use_cuda = backend == "nccl"
    dist.init_process_group(backend)
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.ReLU(), nn.Linear(WIDTH, WIDTH), nn.ReLU(),
                          nn.Linear(WIDTH, 10)).to(device)
    ddp = DDP(model, device_ids=[local_rank] if use_cuda else None)
    bucket_times: list[float] = []

    def timed_allreduce(state, bucket):
        start = time.perf_counter()
        fut = default_hooks.allreduce_hook(None, bucket)

        def done(f):
            bucket_times.append(time.perf_counter() - start)
            return f.value()[0]

        return fut.then(done)

    ddp.register_comm_hook(None, timed_allreduce)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(rank)
    x = torch.randn(BATCH_PER_RANK, WIDTH, generator=gen).to(device)
    y = torch.randint(0, 10, (BATCH_PER_RANK,), generator=gen).to(device)
    step_s, comm_s, cpu_s = [], [], []
    for step in range(steps + WARMUP):
        if use_cuda:
            torch.cuda.synchronize()
        start, cpu_start = time.perf_counter(), time.process_time()
        bucket_times.clear()
        opt.zero_grad()
        loss_fn(ddp(x), y).backward()
        opt.step()
        if use_cuda:
            torch.cuda.synchronize()
        if step >= WARMUP:
            step_s.append(time.perf_counter() - start)
            cpu_s.append(time.process_time() - cpu_start)
            comm_s.append(sum(bucket_times))
    grad_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    dist.barrier()
    if rank == 0:
        result = {"world": world, "backend": dist.get_backend(),
                  "step_ms": 1000 * statistics.median(step_s),
                  "allreduce_ms": 1000 * statistics.median(comm_s),
                  "cpu_ms": 1000 * statistics.median(cpu_s),
                  "grad_bytes": grad_bytes}
        with open(out_path, "w") as handle:
            json.dump(result, handle)
    dist.barrier()  # keeps gloo from tearing down while a peer is still reading
    dist.destroy_process_group()


def backend_for(nproc: int) -> str:
    """NCCL when every rank of the larger run can have its own GPU, else gloo on CPU.

    Decided once for both runs, so the 1-rank and N-rank rows use the same backend.
    """
    import torch

    return "nccl" if torch.cuda.is_available() and torch.cuda.device_count() >= nproc else "gloo"


def _run_world(nproc: int, steps: int, backend: str) -> dict:
    from tensorscope.distributed import launch

    with tempfile.TemporaryDirectory(prefix="tensorscope-ddp-") as folder:
        out = os.path.join(folder, "result.json")
        # One thread per rank at every world size, so 1 vs N compares N workers with one.
        result = launch(nproc, ["-m", "tensorscope.demos.ddp_scaling", "--worker", out,
                                str(steps), backend], env={"OMP_NUM_THREADS": "1"},
                        quiet=True)  # the Demos screen runs this: stderr is the screen
        measured = _read_result(out)
        if not result.ok:
            reasons = "; ".join(f.describe() for f in result.failures) or "no rank reported"
            if measured is None:
                raise RuntimeError(f"the {nproc}-rank run failed: {reasons}")
            # Rank 0 wrote the result after the last barrier, so every step was measured;
            # a rank dying after that is gloo's known abort at teardown ("terminate called
            # without an active exception"), reported as a fact rather than a failed demo.
            measured["teardown_failure"] = reasons
        if measured is None:
            raise RuntimeError(f"the {nproc}-rank run wrote no result")
        return measured


def _read_result(path: str) -> dict | None:
    """The worker's result file, or None when it was never (completely) written."""
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def measure(fixed: bool = False, nproc: int = NPROC, steps: int = STEPS) -> Observation:
    backend = backend_for(nproc)
    one = _run_world(1, steps, backend)
    many = _run_world(nproc, steps, backend)
    sps_1 = BATCH_PER_RANK / (one["step_ms"] / 1000)
    sps_n = nproc * BATCH_PER_RANK / (many["step_ms"] / 1000)
    efficiency = sps_n / (nproc * sps_1)
    overhead = many["step_ms"] - one["step_ms"]
    rows = [
        ("ranks", "samples/s", "step ms", "all-reduce ms", "CPU ms", "efficiency"),
        ("1", f"{sps_1:.0f}", f"{one['step_ms']:.1f}", f"{one['allreduce_ms']:.1f}",
         f"{one['cpu_ms']:.1f}", "100%"),
        (str(nproc), f"{sps_n:.0f}", f"{many['step_ms']:.1f}", f"{many['allreduce_ms']:.1f}",
         f"{many['cpu_ms']:.1f}", f"{100 * efficiency:.0f}%"),
    ]
    table = "\n".join("  ".join(cell.rjust(13) for cell in row) for row in rows)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    facts = {
        "backend": many["backend"],
        "ranks": nproc,
        "batch_per_rank": BATCH_PER_RANK,
        "gradient_MiB_per_step": round(many["grad_bytes"] / 2**20, 2),
        "samples_per_s_1_rank": round(sps_1, 1),
        f"samples_per_s_{nproc}_ranks": round(sps_n, 1),
        "scaling_efficiency": round(efficiency, 3),
        "step_ms_1_rank": round(one["step_ms"], 2),
        f"step_ms_{nproc}_ranks": round(many["step_ms"], 2),
        f"allreduce_ms_per_step_{nproc}_ranks": round(many["allreduce_ms"], 2),
        "overhead_ms_per_step": round(overhead, 2),
        "allreduce_share_of_step": round(many["allreduce_ms"] / many["step_ms"], 3),
        f"cpu_ms_per_step_{nproc}_ranks": round(many["cpu_ms"], 2),
        "cpu_ms_per_step_1_rank": round(one["cpu_ms"], 2),
        "scaling_table": table,
        "cpus": os.cpu_count(),
        "load_average_1min": round(load, 2) if load is not None else None,
        "note": ("all-reduce ms is launch-to-done per step, summed over buckets: it includes "
                 "waiting for the slower rank and may overlap the backward pass. CPU ms is "
                 "rank 0's own CPU time per step. On a machine already busy (load average "
                 "above its CPU count) N processes get N shares of the CPU, so efficiency can "
                 "read above 100%: compare the CPU ms column then"),
    }
    teardown = [run["teardown_failure"] for run in (one, many) if "teardown_failure" in run]
    if teardown:
        facts["teardown_failure"] = "; ".join(teardown)
    return Observation(facts)


SCENARIO = Scenario(
    name="ddp-scaling", title="DDP scaling: 1 vs N processes, and what the all-reduce costs",
    lesson=LESSON, code=CODE, fixed_code=None, screens=("demos",),
    measure=measure, finding=None,
)


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "--worker":
    _worker(sys.argv[2], int(sys.argv[3]), sys.argv[4])
