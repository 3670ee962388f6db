"""``tensorscope inspect`` end to end: the report, --json, diffs, and every kind of bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tensorscope.app.cli import main
from tests import ckpt_factory as make


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tensorscope", *args], capture_output=True, text=True,
                          timeout=120)


def test_json_lists_tensors_with_shared_storage(tmp_path, capsys) -> None:
    path = make.adam_checkpoint(tmp_path / "a.pt")
    assert main(["inspect", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    keys = {t["key"]: t for t in doc["tensors"]}
    assert keys["model.fc1.weight"]["shape"] == [4, 4] and keys["model.fc1.weight"]["dtype"] == "float32"
    assert keys["model.fc1.weight"]["bytes"] == 64 and keys["model.fc1.weight"]["device"] == "cpu"
    assert keys["model.emb.weight"]["storage"] == keys["model.head.weight"]["storage"]
    assert keys["model.fc1.weight"]["storage"] != keys["model.emb.weight"]["storage"]


def test_report_names_what_matters(tmp_path, capsys) -> None:
    assert main(["inspect", str(make.adam_checkpoint(tmp_path / "a.pt"))]) == 0
    out = capsys.readouterr().out
    for words in ("model.fc1.weight", "Shared storages", "Adam/AdamW", "exp_avg_sq", "epoch",
                  "Totals by dtype", "model.emb.weight, model.head.weight"):
        assert words in out


def test_cuda_saved_file_reports_its_device(tmp_path, capsys) -> None:
    assert main(["inspect", str(make.cuda_saved(tmp_path / "c.pt")), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {t["device"] for t in doc["tensors"]} == {"cuda:0"}


def test_torchscript_report_shows_code(tmp_path, capsys) -> None:
    assert main(["inspect", str(make.torchscript(tmp_path / "ts.pt"))]) == 0
    out = capsys.readouterr().out
    assert "TorchScript" in out and "def forward" in out and "0.weight" in out


def test_diff_json(tmp_path, capsys) -> None:
    a = make.adam_checkpoint(tmp_path / "a.pt", steps=1)
    b = make.adam_checkpoint(tmp_path / "b.pt", steps=2, epoch=4)
    assert main(["inspect", str(a), str(b), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["mode"] == "diff" and doc["a"]["tensors"] and doc["b"]["tensors"]
    rows = doc["diff"]["tensors"]
    assert rows[0]["status"] == "changed" and rows[0]["rel_change"] >= rows[1]["rel_change"]
    assert {"key": "epoch", "a": 3, "b": 4} in doc["diff"]["metadata"]


def test_diff_report(tmp_path, capsys) -> None:
    a = make.adam_checkpoint(tmp_path / "a.pt", steps=1)
    b = make.adam_checkpoint(tmp_path / "b.pt", steps=2)
    assert main(["inspect", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "values moved" in out and "model.fc1.weight" in out


def test_malicious_pickle_exit_2_one_line_nothing_runs(tmp_path) -> None:
    marker = tmp_path / "pwned"
    out = run_cli("inspect", str(make.malicious(tmp_path / "evil.pt", marker)))
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert "--trust" in out.stderr and "system" in out.stderr
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["missing", "text", "truncated", "directory"])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, kind) -> None:
    if kind == "missing":
        path = tmp_path / "absent.pt"
    elif kind == "text":
        path = tmp_path / "notes.txt"
        path.write_text("not a checkpoint\n")
    elif kind == "truncated":
        path = make.truncated(tmp_path / "cut.pt", make.adam_checkpoint(tmp_path / "a.pt"))
    else:
        path = tmp_path
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tensorscope: ") and len(err.strip().splitlines()) == 1


def test_piped_report_keeps_every_column(tmp_path) -> None:
    # Found in a walk-through: `inspect a.pt > out.txt` cut the tables at Rich's default 80
    # columns, and the stride/offset and relative-change columns were lost.
    import os

    a = make.adam_checkpoint(tmp_path / "a.pt", steps=1)
    b = make.adam_checkpoint(tmp_path / "b.pt", steps=2)
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    for args, header in (([str(a)], "stride +offset"), ([str(a), str(b)], "‖B−A‖/‖A‖")):
        out = subprocess.run([sys.executable, "-m", "tensorscope", "inspect", *args],
                             capture_output=True, text=True, timeout=120, env=env)
        assert out.returncode == 0, out.stderr
        assert header in out.stdout, out.stdout[:2000]
        assert "model.fc1.weight" in out.stdout  # a key on one line, not folded
