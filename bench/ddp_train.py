"""The training script bench_ddp.py runs under both launchers: a gloo DDP MLP on CPU.

Unmodified by tensorscope; rank 0 prints ``throughput: N samples/s`` over the steps after
warm-up (all ranks' samples), timed inside the script so launcher start-up is left out.
"""

import sys
import time

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

STEPS, WARMUP, BATCH, WIDTH = int(sys.argv[1]) if len(sys.argv) > 1 else 150, 20, 64, 256

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(0)
model = DDP(nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.ReLU(), nn.Linear(WIDTH, 10)))
opt = torch.optim.SGD(model.parameters(), lr=0.01)
loss_fn = nn.CrossEntropyLoss()
gen = torch.Generator().manual_seed(rank)
x = torch.randn(BATCH, WIDTH, generator=gen)
y = torch.randint(0, 10, (BATCH,), generator=gen)
for step in range(STEPS + WARMUP):
    if step == WARMUP:
        dist.barrier()
        start = time.perf_counter()
    opt.zero_grad()
    loss_fn(model(x), y).backward()
    opt.step()
dist.barrier()
elapsed = time.perf_counter() - start
if rank == 0:
    print(f"throughput: {STEPS * BATCH * world / elapsed:.1f} samples/s", flush=True)
dist.barrier()
dist.destroy_process_group()
