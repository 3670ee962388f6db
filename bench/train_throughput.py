"""A plain training script for bench_run.py: an MLP on synthetic data, its own throughput printed.

It knows nothing of tensorscope. After --warmup steps it times --steps steps and prints one
line, ``samples_per_s N``, as the last line of its output.
"""

import argparse
import time

import torch
import torch.nn as nn

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--warmup", type=int, default=30)
parser.add_argument("--batch", type=int, default=256)
parser.add_argument("--width", type=int, default=512)
opts = parser.parse_args()

torch.manual_seed(0)
torch.set_num_threads(1)
model = nn.Sequential(nn.Linear(128, opts.width), nn.ReLU(), nn.Linear(opts.width, opts.width),
                      nn.ReLU(), nn.Linear(opts.width, 10))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
criterion = nn.CrossEntropyLoss()
x = torch.randn(opts.batch, 128)
y = torch.randint(0, 10, (opts.batch,))

for i in range(opts.warmup + opts.steps):
    if i == opts.warmup:
        start = time.perf_counter()
    optimizer.zero_grad()
    loss = criterion(model(x), y)
    loss.backward()
    optimizer.step()
elapsed = time.perf_counter() - start
print(f"samples_per_s {opts.steps * opts.batch / elapsed:.1f}")
