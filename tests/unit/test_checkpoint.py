"""The checkpoint inspector's core: loading safely, the tree, storages, devices, optimizer state."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tensorscope.checkpoint import describe, open_checkpoint
from tensorscope.ckpt_load import Loaded
from tensorscope.errors import UserError
from tests import ckpt_factory as make


def test_tied_weights_share_one_storage(tmp_path) -> None:
    ckpt = open_checkpoint(make.tied_state_dict(tmp_path / "tied.pt"))
    by_key = {t.key: t for t in ckpt.tensors}
    assert list(by_key) == ["emb.weight", "fc1.weight", "fc1.bias", "head.weight"]
    assert by_key["emb.weight"].storage == by_key["head.weight"].storage
    assert by_key["fc1.weight"].storage != by_key["emb.weight"].storage
    assert len(ckpt.storages) == 3
    shared = [s for s in ckpt.storages if len(s.keys) > 1]
    assert [s.keys for s in shared] == [["emb.weight", "head.weight"]]
    assert by_key["emb.weight"].bytes == 10 * 4 * 4 and by_key["emb.weight"].stride == (4, 1)
    totals = ckpt.totals_by_dtype()["float32"]
    # The tied storage counts once in storage bytes, twice in tensor bytes.
    assert totals["bytes"] - totals["storage_bytes"] == 160
    assert ckpt.mmap and ckpt.format == "zip" and not ckpt.trusted


def test_values_match_what_was_saved(tmp_path) -> None:
    torch.manual_seed(0)
    sd = make.TinyNet().state_dict()
    ckpt = open_checkpoint(make.tied_state_dict(tmp_path / "tied.pt"))
    for key, value in sd.items():
        assert torch.equal(ckpt.values[key], value)


def test_adam_checkpoint_state_per_parameter(tmp_path) -> None:
    path = make.adam_checkpoint(tmp_path / "adam.pt", steps=2)
    ckpt = open_checkpoint(path)
    [opt] = ckpt.optimizers
    assert opt.key == "optimizer" and opt.kind == "Adam/AdamW"
    assert opt.groups[0]["lr"] == 1e-2 and opt.groups[0]["params"] == 3
    # model.parameters() yields the tied weight once: 3 params for 4 state_dict keys.
    assert [p.name for p in opt.params] == ["model.emb.weight", "model.fc1.weight", "model.fc1.bias"]
    assert opt.names_from == "model"
    raw = torch.load(path, weights_only=True)["optimizer"]["state"]
    for p in opt.params:
        assert p.step == 2.0
        moments = {m.name: m for m in p.moments}
        assert set(moments) == {"exp_avg", "exp_avg_sq"}
        expected = torch.linalg.vector_norm(raw[p.id]["exp_avg"]).item()
        assert moments["exp_avg"].norm == pytest.approx(expected, rel=1e-5)
        assert moments["exp_avg"].shape == tuple(raw[p.id]["exp_avg"].shape)
    assert ckpt.metadata["epoch"] == 3 and ckpt.metadata["config.name"] == "tiny"
    assert not any(k.startswith("optimizer.") for k in ckpt.metadata)
    groups = ckpt.totals_by_module()
    assert {"model.emb", "model.fc1", "model.head", "optimizer"} <= set(groups)


def test_optimizer_names_refused_when_counts_disagree(tmp_path) -> None:
    model = make.TinyNet()
    opt = torch.optim.SGD(list(model.parameters())[:2], lr=0.1, momentum=0.9)
    model(torch.arange(3)).sum().backward()
    opt.step()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, tmp_path / "sgd.pt")
    [state] = open_checkpoint(tmp_path / "sgd.pt").optimizers
    assert state.kind == "SGD with momentum"
    assert all(p.name is None for p in state.params)
    assert "cannot name" in state.names_note and "3 parameters, the optimizer 2" in state.names_note


def test_cuda_saved_file_opens_on_cpu_and_says_where_it_came_from(tmp_path) -> None:
    path = make.cuda_saved(tmp_path / "cuda.pt")
    # Proof the fixture really records CUDA storages: a plain load restores onto CUDA,
    # which fails without a GPU and lands there with one.
    if torch.cuda.is_available():
        assert all(v.is_cuda for v in torch.load(path, weights_only=True)["model"].values())
    else:
        with pytest.raises(RuntimeError):
            torch.load(path, weights_only=True)
    ckpt = open_checkpoint(path)
    assert {t.device for t in ckpt.tensors} == {"cuda:0"}
    assert all(v.device.type == "cpu" for v in ckpt.values.values())
    torch.manual_seed(0)
    assert torch.equal(ckpt.values["model.fc1.weight"], make.TinyNet().state_dict()["fc1.weight"])


def test_torchscript_archive_code_and_parameters(tmp_path) -> None:
    ckpt = open_checkpoint(make.torchscript(tmp_path / "ts.pt"))
    assert ckpt.format == "torchscript"
    assert [t.key for t in ckpt.tensors] == ["0.weight", "0.bias"]
    assert {t.device for t in ckpt.tensors} == {"cpu"}
    assert "def forward" in ckpt.code[""] and "torch.linear" in ckpt.code["0"]
    assert ckpt.module_types["0"] == "Linear"


def test_torchscript_saved_on_cuda_says_so(tmp_path) -> None:
    ckpt = open_checkpoint(make.torchscript_cuda(tmp_path / "ts_cuda.pt", tmp_path / "ts.pt"))
    assert {t.device for t in ckpt.tensors} == {"cuda:0"}
    assert all(v.device.type == "cpu" for v in ckpt.values.values())


def test_malicious_pickle_is_refused_and_never_runs(tmp_path) -> None:
    marker = tmp_path / "pwned"
    path = make.malicious(tmp_path / "evil.pt", marker)
    with pytest.raises(UserError) as err:
        open_checkpoint(path)
    assert "system" in str(err.value) and "--trust" in str(err.value)
    assert "\n" not in str(err.value)
    assert not marker.exists()


def test_malicious_legacy_pickle_is_refused_by_torch_and_never_runs(tmp_path) -> None:
    # No static scan for the legacy format: torch's weights-only unpickler is the fence, and
    # its UnpicklingError text is what names the global.
    marker = tmp_path / "pwned"
    torch.save({"payload": make._Boom(marker)}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    with pytest.raises(UserError, match=r"posix\.system|os\.system|nt\.system") as err:
        open_checkpoint(tmp_path / "old.pt")
    assert "--trust" in str(err.value) and not marker.exists()


def test_trust_really_unpickles(tmp_path) -> None:
    # The other side of the fence: --trust is full unpickling, so the payload runs. This is
    # what makes the refusal test above meaningful.
    marker = tmp_path / "ran"
    ckpt = open_checkpoint(make.malicious(tmp_path / "evil.pt", marker), trust=True)
    assert marker.exists() and ckpt.trusted


def test_custom_class_needs_trust_and_loads_with_it(tmp_path) -> None:
    torch.save({"w": torch.zeros(2), "args": argparse.Namespace(lr=0.5)}, tmp_path / "ns.pt")
    with pytest.raises(UserError, match="argparse.Namespace.*--trust"):
        open_checkpoint(tmp_path / "ns.pt")
    ckpt = open_checkpoint(tmp_path / "ns.pt", trust=True)
    assert ckpt.metadata["args.lr"] == 0.5


def test_whole_module_saved_with_trust(tmp_path) -> None:
    torch.save(make.TinyNet(), tmp_path / "module.pt")
    with pytest.raises(UserError, match="--trust"):
        open_checkpoint(tmp_path / "module.pt")
    ckpt = open_checkpoint(tmp_path / "module.pt", trust=True)
    assert [t.key for t in ckpt.tensors] == ["emb.weight", "fc1.weight", "fc1.bias", "head.weight"]


@pytest.mark.parametrize("content, words", [
    (b"hello, this is text\n", "not a torch file"),
    (b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01.", "plain pickle"),
    (b"", "empty"),
])
def test_not_a_torch_file(tmp_path, content, words) -> None:
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(UserError, match=words):
        open_checkpoint(path)


def test_truncated_and_missing_files(tmp_path) -> None:
    good = make.adam_checkpoint(tmp_path / "good.pt")
    with pytest.raises(UserError, match="truncated or corrupted"):
        open_checkpoint(make.truncated(tmp_path / "cut.pt", good))
    with pytest.raises(UserError, match="no such file"):
        open_checkpoint(tmp_path / "absent.pt")
    with pytest.raises(UserError, match="directory"):
        open_checkpoint(tmp_path)


def test_corrupted_pickle_is_not_blamed_on_trust(tmp_path) -> None:
    import zipfile

    good = make.tied_state_dict(tmp_path / "good.pt")
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith("data.pkl"))
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + 20:start + 40] = b"\x00" * 20
    (tmp_path / "bad.pt").write_bytes(bytes(data))
    with pytest.raises(UserError) as err:
        open_checkpoint(tmp_path / "bad.pt")
    assert "corrupted" in str(err.value) and "--trust" not in str(err.value)


def test_legacy_format(tmp_path) -> None:
    torch.save(make.TinyNet().state_dict(), tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    ckpt = open_checkpoint(tmp_path / "old.pt")
    assert ckpt.format == "legacy" and not ckpt.mmap
    assert len(ckpt.storages) == 3


def test_deep_nesting_walks_without_recursion(tmp_path) -> None:
    deep: object = torch.ones(1)
    for _ in range(5000):
        deep = {"n": deep}
    ckpt = describe(Loaded(path="deep.pt", format="zip", obj=deep, file_bytes=0, mmap=False, trusted=False))
    assert len(ckpt.tensors) == 1 and ckpt.tensors[0].key == ".".join(["n"] * 5000)


def test_json_form(tmp_path) -> None:
    doc = json.loads(json.dumps(open_checkpoint(make.adam_checkpoint(tmp_path / "a.pt")).to_json()))
    first = doc["tensors"][0]
    assert {"key", "shape", "dtype", "bytes", "storage", "device"} <= set(first)
    assert first["key"] == "model.emb.weight" and first["shape"] == [10, 4]
    keys = {t["key"]: t for t in doc["tensors"]}
    assert keys["model.emb.weight"]["storage"] == keys["model.head.weight"]["storage"]
    assert doc["optimizers"][0]["params"][0]["name"] == "model.emb.weight"
    assert doc["metadata"]["epoch"] == 3


def test_legacy_file_bigger_than_free_memory_is_refused(tmp_path, monkeypatch) -> None:
    import psutil

    torch.save({"w": torch.ones(1000)}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)

    class _Tiny:
        available = 100  # bytes: far less than the file

    monkeypatch.setattr(psutil, "virtual_memory", lambda: _Tiny())
    with pytest.raises(UserError, match="cannot be memory-mapped"):
        open_checkpoint(tmp_path / "old.pt")


def test_zip_file_is_memory_mapped_not_read(tmp_path) -> None:
    """Rewrite the file's bytes after opening: a memory-mapped tensor sees the new values
    (untouched pages of a private mapping read the file, on Linux), a copy would not."""
    import struct
    import zipfile

    path = tmp_path / "big.pt"
    torch.save({"w": torch.zeros(4096)}, path)
    ckpt = open_checkpoint(path)
    with zipfile.ZipFile(path) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith("data/0"))
    with open(path, "r+b") as fh:
        fh.seek(info.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", fh.read(4))
        fh.seek(info.header_offset + 30 + name_len + extra_len)
        fh.write(torch.ones(4096).numpy().tobytes())
    assert ckpt.mmap and float(ckpt.values["w"].sum()) == 4096.0


def test_sparse_tensor_counts_its_real_bytes(tmp_path) -> None:
    torch.save({"sp": torch.eye(100).to_sparse()}, tmp_path / "sp.pt")
    [entry] = open_checkpoint(tmp_path / "sp.pt").tensors
    assert entry.storage is None and entry.kind == "sparse_coo"
    assert entry.bytes == 100 * 4 + 2 * 100 * 8  # values + int64 indices, not 100x100 floats


def test_views_share_their_base_storage_with_an_offset(tmp_path) -> None:
    base = torch.arange(10.0)
    torch.save({"base": base, "window": base[2:5], "col": base.view(5, 2)[:, 1]}, tmp_path / "v.pt")
    ckpt = open_checkpoint(tmp_path / "v.pt")
    t = {e.key: e for e in ckpt.tensors}
    assert t["base"].storage == t["window"].storage == t["col"].storage
    assert (t["window"].offset, t["window"].stride) == (2, (1,))
    assert (t["col"].offset, t["col"].stride) == (1, (2,))
    assert torch.equal(ckpt.values["col"], base.view(5, 2)[:, 1])


def _flatten(obj, prefix=""):
    """The reference: dotted keys of every tensor, the obvious recursive way."""
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    items = obj.items() if isinstance(obj, dict) else enumerate(obj)
    out = {}
    for k, v in items:
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


_names = st.text(alphabet="abcxyz_", min_size=1, max_size=4)
_leaves = st.integers(0, 3).map(lambda n: torch.full((n,), float(n)))
_trees = st.recursive(_leaves, lambda kids: st.one_of(st.lists(kids, min_size=1, max_size=3),
                                                      st.dictionaries(_names, kids, min_size=1, max_size=3)),
                      max_leaves=12)


@settings(max_examples=30, deadline=None)
@given(_trees)
def test_every_tensor_once_under_its_dotted_key(tree) -> None:
    ckpt = describe(Loaded(path="t.pt", format="zip", obj=tree, file_bytes=0, mmap=False, trusted=False))
    expected = _flatten(tree)
    assert [t.key for t in ckpt.tensors] == list(expected)
    for key, value in expected.items():
        assert ckpt.values[key] is value
