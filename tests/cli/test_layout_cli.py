"""`tensorscope layout` end to end, in subprocesses: the report, --json, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def layout(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tensorscope", "layout", *args],
                          capture_output=True, text=True, timeout=120)


def test_json_has_the_contract_keys() -> None:
    out = layout("torch.arange(12.).reshape(3, 4)[:, 1]", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    for key in ("shape", "strides", "storage_offset", "dtype", "itemsize", "is_contiguous",
                "storage_size", "storage_indices", "base", "shares_storage_with_base"):
        assert key in data, key
    assert data["shape"] == [3] and data["strides"] == [4] and data["storage_offset"] == 1
    assert data["storage_indices"] == [1, 5, 9] and data["storage_size"] == 12
    assert data["dtype"] == "float32" and data["itemsize"] == 4 and data["is_contiguous"] is False
    assert data["shares_storage_with_base"] is True
    assert data["base"]["shape"] == [12] and data["base"]["base"] is None


def in_process(capsys, *args: str) -> tuple[int, str, str]:
    """The same CLI in this process (faster than a subprocess for the many cases)."""
    from tensorscope.app.cli import main

    code = main(["layout", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_omits_indices_over_ten_thousand(capsys) -> None:
    code, out, _ = in_process(capsys, "torch.zeros(1).expand(100, 101)", "--json")
    data = json.loads(out)
    assert code == 0 and data["storage_indices"] is None and data["expanded_dims"] == [0, 1]
    small = json.loads(in_process(capsys, "torch.zeros(100, 100)", "--json")[1])
    assert len(small["storage_indices"]) == 10_000


def test_report_for_people(capsys) -> None:
    code, out, err = in_process(capsys, "torch.arange(12.).reshape(3, 4).T")
    assert code == 0, err
    for words in ("strides", "storage_offset", "Logical grid", "Storage strip", "view(-1) fails",
                  "reshape(-1) copies", "@4"):
        assert words in out, words


def test_bad_input_in_a_real_process() -> None:
    out = layout("torch.empty(10**14)")
    assert out.returncode == 2 and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


@pytest.mark.parametrize("expr, words", [
    ("torch.(", "syntax error"),
    ("nope * 2", "unknown name"),
    ("torch.ones(2) @ torch.ones(3)", "failed"),
    ("3 + 4", "not a tensor"),
    ("torch.empty(10**14)", "more memory than this machine can give"),
    ("torch.ones(3).to_sparse()", "not supported yet"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, expr: str, words: str) -> None:
    code, out, err = in_process(capsys, expr)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tensorscope: ") and words in lines[0]
