"""The command line end to end, in subprocesses: entry points, help, bad usage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tensorscope", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_help_via_module_and_script() -> None:
    out = run_cli("--help")
    assert out.returncode == 0
    assert "tensorscope" in out.stdout
    script = subprocess.run([str(Path(sys.executable).parent / "tensorscope"), "--help"], capture_output=True, text=True)
    assert script.returncode == 0 and script.stdout == out.stdout


def test_version() -> None:
    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.startswith("tensorscope ")


def test_unknown_command_is_one_line_exit_2() -> None:
    out = run_cli("no-such-command")
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr
