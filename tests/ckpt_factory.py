"""Checkpoint files built at test time, named after what they exercise.

Nothing binary is committed: every fixture is written into pytest's ``tmp_path``.
"""

from __future__ import annotations

import io
import os
import pickletools
import struct
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn


class TinyNet(nn.Module):
    """Two linear layers and an embedding whose weight is tied to the output layer."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.fc1 = nn.Linear(4, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.emb.weight  # tied: one storage, two keys

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.fc1(self.emb(x))))


def tied_state_dict(path: Path) -> Path:
    torch.manual_seed(0)
    torch.save(TinyNet().state_dict(), path)
    return path


def adam_checkpoint(path: Path, *, steps: int = 2, seed: int = 0, epoch: int = 3) -> Path:
    """{"model": state_dict, "optimizer": Adam state, "epoch", "loss"} after a few steps."""
    torch.manual_seed(seed)
    model = TinyNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss = torch.tensor(0.0)
    for _ in range(steps):
        opt.zero_grad()
        loss = model(torch.arange(6) % 10).pow(2).mean()
        loss.backward()
        opt.step()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                "loss": float(loss.detach()), "config": {"lr": 1e-2, "name": "tiny"}}, path)
    return path


def _relabel_locations(pickled: bytes, old: str, new: str) -> bytes:
    """Re-encode every pickled string equal to ``old`` as ``new`` (length prefixes fixed)."""
    ops = list(pickletools.genops(pickled))
    out = bytearray()
    for i, (op, arg, pos) in enumerate(ops):
        end = ops[i + 1][2] if i + 1 < len(ops) else len(pickled)
        if arg == old and op.name in ("SHORT_BINUNICODE", "BINUNICODE"):
            raw = new.encode()
            out += (b"\x8c" + bytes([len(raw)]) if op.name == "SHORT_BINUNICODE"
                    else b"X" + struct.pack("<I", len(raw))) + raw
        else:
            out += pickled[pos:end]
    return bytes(out)


def relabel_archive(source: bytes, path: Path, old: str = "cpu", new: str = "cuda:0") -> Path:
    """Copy a torch zip archive record by record, with data.pkl's location tags relabelled.

    Every record goes back through torch's own archive writer, so alignment and layout
    match a file torch wrote itself.
    """
    with zipfile.ZipFile(io.BytesIO(source)) as zf:
        records = [(info.filename, zf.read(info)) for info in zf.infolist()]
    root = records[0][0].split("/")[0]
    writer = torch._C.PyTorchFileWriter(str(path))
    for name, data in records:
        rel = name[len(root) + 1:]
        if rel in (".data/serialization_id", ".data/version", "version"):
            continue  # the writer adds its own on close
        if rel == "data.pkl":
            data = _relabel_locations(data, old, new)
        writer.write_record(rel, data, len(data))
    writer.write_end_of_file()
    return path


def cuda_saved(path: Path) -> Path:
    """A checkpoint whose storages say they were saved from "cuda:0", made without a GPU.

    How: torch.save writes each storage's location tag ("cpu" here) into data.pkl's
    persistent ids. We save normally, re-encode those "cpu" strings as "cuda:0" with
    pickletools (fixing each string's length prefix), and write every record back with
    torch's own archive writer (:func:`relabel_archive`). A plain ``torch.load`` of the
    result tries to restore onto CUDA and fails on this machine; ``map_location`` is what
    makes it open on a CPU.
    """
    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save({"model": TinyNet().state_dict(), "epoch": 1}, buf)
    return relabel_archive(buf.getvalue(), path)


def torchscript_cuda(path: Path, scratch: Path) -> Path:
    """A TorchScript archive whose storages say "cuda:0" (same relabelling as cuda_saved)."""
    return relabel_archive(torchscript(scratch).read_bytes(), path)


class _Boom:
    """Unpickling this runs ``os.system`` — the classic malicious checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.cmd = f"touch {marker}"

    def __reduce__(self):
        return (os.system, (self.cmd,))


def malicious(path: Path, marker: Path) -> Path:
    torch.save({"model": {"w": torch.ones(2)}, "payload": _Boom(marker)}, path)
    return path


def torchscript(path: Path) -> Path:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(nn.Sequential(nn.Linear(3, 2), nn.ReLU())).save(str(path))
    return path


def truncated(path: Path, source: Path) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path
