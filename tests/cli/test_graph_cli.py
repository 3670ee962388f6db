"""`tensorscope graph`: targets, formats, and bad input (one line, exit 2), end to end."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from tensorscope.export import dot_available


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tensorscope", "graph", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


EXPR = "(torch.arange(6.).reshape(2, 3).requires_grad_() * 2).sin().sum()"


def in_process(capsys, *args: str) -> tuple[int, str, str]:
    """The same entry point in this process (fast); subprocess tests cover the real one."""
    from tensorscope.app.cli import main

    code = main(["graph", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_expression_to_dot_on_stdout_identical_across_processes(capsys) -> None:
    a = run_cli(EXPR)
    assert a.returncode == 0, a.stderr
    assert a.stdout.startswith("digraph autograd {") and "SinBackward0" in a.stdout
    code, out, _ = in_process(capsys, EXPR)
    assert code == 0 and out == a.stdout


def test_file_function_target_with_model_to_json(tmp_path: Path, capsys) -> None:
    script = tmp_path / "model.py"
    script.write_text(textwrap.dedent("""
        import torch
        import torch.nn as nn

        def build():
            net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
            return net(torch.randn(5, 3)).sum(), net
    """))
    out = run_cli(f"{script}:build", "-o", str(tmp_path / "g.json"))
    assert out.returncode == 0, out.stderr
    data = json.loads((tmp_path / "g.json").read_text())
    leaves = {n["label"] for n in data["nodes"] if n["kind"] == "leaf"}
    assert leaves == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert {n["module"] for n in data["nodes"] if n["name"] == "ReluBackward0"} == {"1"}
    code, collapsed, _ = in_process(capsys, f"{script}:build", "--collapse", "modules")
    assert code == 0 and '"m:0"' in collapsed and "ReluBackward0" not in collapsed


@pytest.mark.skipif(not dot_available(), reason="graphviz's dot is not installed")
def test_svg_and_png_from_suffix(tmp_path: Path, capsys) -> None:
    for name, magic in (("g.svg", b"<?xml"), ("g.png", b"\x89PNG")):
        code, _, err = in_process(capsys, EXPR, "-o", str(tmp_path / name))
        assert code == 0, err
        assert (tmp_path / name).read_bytes().lstrip().startswith(magic)


@pytest.mark.parametrize("args, needle", [
    (("torch.ones(3",), "syntax error"),
    (("no_such_name + 1",), "unknown name"),
    (("3",), "not a tensor"),
    (("torch.ones(3)",), "requires_grad=False"),
    (("missing.py:f",), "no such file"),
    ((EXPR, "-o", "graph.txt"), "cannot tell the format"),
    ((EXPR, "--format", "png"), "give a file"),
    (("demo:definitely-not-a-demo",), "demo"),
])
def test_bad_input_is_one_line_exit_2(capsys, args: tuple[str, ...], needle: str) -> None:
    code, _, err = in_process(capsys, *args)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err


def test_bad_input_in_a_real_process() -> None:
    out = run_cli("torch.ones(3)")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and "requires_grad=False" in out.stderr


def test_missing_dot_for_svg_says_how_to_install(tmp_path: Path, capsys, monkeypatch) -> None:
    import tensorscope.export as ex

    monkeypatch.setattr(ex.shutil, "which", lambda name: None)
    code, _, err = in_process(capsys, EXPR, "-o", str(tmp_path / "g.svg"))
    assert code == 2 and "install graphviz" in err and len(err.strip().splitlines()) == 1
    code, out, _ = in_process(capsys, EXPR)
    assert code == 0 and out.startswith("digraph")
    code, out, _ = in_process(capsys, EXPR, "--format", "json")
    assert code == 0 and json.loads(out)["nodes"]


def test_demo_target_uses_graph_roots(monkeypatch, capsys) -> None:
    """demo:NAME resolves through tensorscope.demos.get(NAME).graph_roots() (a fake here)."""
    import torch

    import tensorscope.demos as demos
    from tensorscope.app.commands import graph as command
    from tensorscope.errors import UserError

    class FakeScenario:
        name = "fake"

        def graph_roots(self):
            w = torch.ones(2, requires_grad=True)
            return {"loss": (w * 3).sum(), "w": w}

    def fake_get(name):
        if name != "fake":
            raise UserError(f"no demo named '{name}'")
        return FakeScenario()

    monkeypatch.setattr(demos, "get", fake_get, raising=False)
    args = argparse.Namespace(target="demo:fake", output=None, format="json", collapse="none")
    assert command.run(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert [n["label"] for n in data["nodes"] if n["kind"] == "root"] == ["loss"]
    assert any(n["label"] == "w" and n["kind"] == "leaf" for n in data["nodes"])
    with pytest.raises(UserError, match="no demo named"):
        command.run(argparse.Namespace(target="demo:other", output=None, format="dot",
                                       collapse="none"))
