"""The CUDA paths, checked where a GPU is: the caching allocator's counters, float16 AMP with
``GradScaler("cuda")`` under ``tensorscope run``, CUDA's own count of host syncs, the watch's
device-side fetch, and storage views of CUDA tensors against torch's own answers.

Skipped on machines without CUDA (CI has none); run them on a GPU box with
``.venv/bin/python -m pytest tests/gpu``.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from tensorscope.hooks import fetch_later
from tensorscope.runner import Instrumentation
from tensorscope.storage import aliasing, gather, layout_of, value_window, view_failure
from tensorscope.syncs import CudaSyncWatch
from tensorscope.telemetry import memory_snapshot, read_jsonl
from tensorscope.watch import watch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tensorscope", *args], capture_output=True,
                          text=True, timeout=300)


def test_memory_snapshot_reads_the_caching_allocator() -> None:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    block = torch.empty(64 << 20, dtype=torch.uint8, device="cuda")
    held = memory_snapshot("cuda")
    assert held["kind"] == "cuda" and held["device"] == f"cuda:{torch.cuda.current_device()}"
    assert held["allocated"] == torch.cuda.memory_allocated() >= 64 << 20
    assert held["reserved"] == torch.cuda.memory_reserved() >= held["allocated"]
    assert held["peak"] == torch.cuda.max_memory_allocated() >= held["allocated"]
    del block
    freed = memory_snapshot(torch.device("cuda", torch.cuda.current_device()))
    # Freed memory leaves the allocated count but stays reserved (cached) and in the peak.
    assert freed["allocated"] <= held["allocated"] - (64 << 20)
    assert freed["reserved"] == held["reserved"] and freed["peak"] == held["peak"]


def test_cuda_sync_watch_counts_item_and_passes_other_warnings_on() -> None:
    x = torch.arange(6.0, device="cuda")
    watcher = CudaSyncWatch()
    with pytest.warns(UserWarning, match="not a sync"):
        assert watcher.start()
        x.sum().item()
        (x * 2).max().item()
        y = x + 1  # queued kernels: no sync
        warnings.warn("not a sync", UserWarning)
        count = watcher.stop()
    assert count == 2
    assert torch.cuda.get_sync_debug_mode() == 0
    assert y.device.type == "cuda"


def _cuda_model() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                          nn.Linear(64, 4)).cuda()
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3)


def test_watch_on_cuda_records_torchs_own_loss_and_gradient_norm() -> None:
    model, opt = _cuda_model()
    loss_fn = nn.CrossEntropyLoss()
    x, y = torch.randn(128, 32, device="cuda"), torch.randint(0, 4, (128,), device="cuda")
    expected = []
    with watch(model, opt, every=3, max_overhead=None) as session:
        for _ in range(12):
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            norm = torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(p.grad) for p in model.parameters()]))
            expected.append((loss.item(), norm.item()))
            opt.step()
    records = session.records
    assert len(records) == 12 and session.errors == 0
    for record, (loss, norm) in zip(records, expected):
        assert record.loss == pytest.approx(loss, rel=1e-6)
        assert record.grad_norm == pytest.approx(norm, rel=1e-4)
        assert record.memory is None or record.memory["kind"] == "cuda"
    assert records[0].memory["kind"] == "cuda" and records[0].memory["allocated"] > 0
    detail = [r for r in records if r.modules]
    assert len(detail) >= 3
    for record in detail:
        assert set(record.modules) >= {"0", "2", "4"}
        assert all(entry["nonfinite"] == 0 for entry in record.modules.values())
        assert all(0 < p["update_ratio"] < 1 for p in record.params.values())


def test_watch_on_cuda_counts_the_scripts_item_calls() -> None:
    model, opt = _cuda_model()
    loss_fn = nn.CrossEntropyLoss()
    x, y = torch.randn(64, 32, device="cuda"), torch.randint(0, 4, (64,), device="cuda")
    with watch(model, opt) as session:
        for _ in range(8):
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            loss.item()  # the script's own sync, inside the counted window
            opt.step()
    sampled = [r.signals for r in session.records if r.signals.get("host_syncs_sampled")]
    assert sampled, "the first steps are always sampled"
    assert all(s["host_syncs"] >= 1 and s["host_syncs_cuda"] >= 1 for s in sampled)


def test_run_float16_amp_on_cuda_skips_halves_and_grows_back(tmp_path: Path) -> None:
    record = tmp_path / "amp.jsonl"
    out = run_cli("run", str(FIXTURES / "amp_train.py"), "--device", "cuda", "--headless",
                  "--record", str(record), "--json")
    assert out.returncode == 0, out.stderr
    records, meta, dropped = read_jsonl(record)
    assert len(records) == 12 and dropped == 0 and meta["exit_code"] == 0
    amp = [r.amp for r in records]
    assert [a["skipped"] for a in amp].index(True) == 3 and sum(a["skipped"] for a in amp) == 1
    assert all(a["autocast_dtype"] == "float16" for a in amp)
    printed = [line.split() for line in out.stdout.splitlines() if line.startswith("iter")]
    assert [a["scale"] for a in amp] == [float(words[-1]) for words in printed]
    # The record's loss is the criterion's; the script multiplied it by inf afterwards.
    own = [float(words[3]) for words in printed]
    assert [r.loss for i, r in enumerate(records) if i != 3] == own[:3] + own[4:]
    assert own[3] == float("inf") and records[3].loss < float("inf")
    scales = [a["scale"] for a in amp]
    assert scales[3] == scales[2] / 2 and max(scales[4:]) > scales[2]
    memory = [r.memory for r in records if r.memory is not None]
    assert memory and all(m["kind"] == "cuda" for m in memory)
    assert all(0 < m["allocated"] <= m["peak"] and m["allocated"] <= m["reserved"] for m in memory)


def test_minimal_script_on_cuda_records_device_memory(tmp_path: Path) -> None:
    # minimal_train.py moves its model to CUDA when there is one.
    record = tmp_path / "run.jsonl"
    out = run_cli("run", str(FIXTURES / "minimal_train.py"), "--epochs", "1", "--headless",
                  "--record", str(record))
    assert out.returncode == 0, out.stderr
    train = [r for r in read_jsonl(record)[0] if r.phase == "train"]
    own = [float(line.split()[-1]) for line in out.stdout.splitlines() if line.startswith("step")]
    assert [r.loss for r in train] == own and len(train) == 13
    assert all(r.grad_norm > 0 and r.signals["hook_errors"] == 0 for r in train)
    assert train[0].memory["kind"] == "cuda"


def _views(base: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"t": base.t(), "slice": base[1::2, 3:], "permute": base.view(4, 12, 2).permute(2, 0, 1),
            "expand": base[:1].expand(5, 12), "strided": base.as_strided((3, 4), (5, 2), 7),
            "every-third": base.view(-1)[::3]}


def test_storage_views_of_cuda_tensors_match_torch() -> None:
    base = torch.arange(96, dtype=torch.float32, device="cuda").view(8, 12)
    for name, view in _views(base).items():
        layout = layout_of(view, name)
        assert layout.shape == tuple(view.shape) and layout.strides == tuple(view.stride())
        assert layout.storage_offset == view.storage_offset()
        assert layout.device == str(view.device) and layout.span is not None
        assert value_window(view) == view.flatten().cpu().tolist(), name
        positions = torch.arange(view.numel())
        _, values = gather(view, positions)
        assert values == view.flatten().cpu().tolist(), name
        shared = aliasing(base, view)
        assert shared.same_storage and shared.overlap, name
    assert not aliasing(base, base.clone()).same_storage
    assert aliasing(base[:4], base[4:]).overlap is False
    assert view_failure(base.t(), (96,)) is not None and view_failure(base, (12, 8)) is None
    half = base.to(torch.bfloat16)[::2]
    assert value_window(half) == half.float().flatten().cpu().tolist()


def test_fetch_later_copies_into_page_locked_memory_and_waits_only_when_read() -> None:
    values = [torch.tensor(1.5, device="cuda"), torch.tensor(-2.0, device="cuda").half()]
    torch.cuda.set_sync_debug_mode("error")
    try:
        pending = fetch_later(values)  # raises if anything here waited for the device
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert pending._host.is_pinned()
    assert pending.values() == [1.5, -2.0]


def test_plain_cuda_steps_under_run_never_wait_for_the_gpu() -> None:
    model, opt = _cuda_model()
    loss_fn = nn.CrossEntropyLoss()
    x, y = torch.randn(128, 32, device="cuda"), torch.randint(0, 4, (128,), device="cuda")
    events: list = []
    queued: list = []

    def emit_later(build):
        queued.append(build)
        events.append(build)

    # detail="steps": no per-module detail steps, whose fetch does wait (rarely, by design).
    instr = Instrumentation(__file__, events.append, detail="steps", emit_later=emit_later)
    instr.install()
    losses, norms = [], []
    try:
        for i in range(40):
            if i == 8:  # past the first steps, which are full steps and fetch at once
                torch.cuda.set_sync_debug_mode("error")
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            grads = [p.grad for p in model.parameters()]
            norms.append(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))))
            opt.step()
            losses.append(loss.detach())
    finally:
        torch.cuda.set_sync_debug_mode(0)
        instr.finish()
    assert instr.hook_errors == 0  # a sync in tensorscope's hooks would have raised there
    steps = [e for e in (e() if callable(e) else e for e in events) if e["type"] == "step"]
    assert len(steps) == 40 and len(queued) >= 30
    assert [e["loss"] for e in steps] == [t.item() for t in losses]
    assert [e["grad_norm"] for e in steps] == pytest.approx([t.item() for t in norms], rel=1e-5)
