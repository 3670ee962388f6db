"""`tensorscope demo` end to end in subprocesses (kept to three: each starts torch)."""

from __future__ import annotations

import json
import subprocess
import sys


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tensorscope", *args], capture_output=True,
                          text=True, timeout=120)


def test_demo_json_lists_names_and_titles() -> None:
    out = run_cli("demo", "--json")
    assert out.returncode == 0
    items = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"missing-zero-grad", "lr-finder"} <= {i["name"] for i in items}
    assert all(set(i) == {"name", "title"} for i in items)


def test_unknown_demo_is_one_line_exit_2() -> None:
    out = run_cli("demo", "no-such-demo")
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and "missing-zero-grad" in out.stderr


def test_headless_json_last_line_is_the_summary() -> None:
    out = run_cli("demo", "missing-zero-grad", "--headless", "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["name"] == "missing-zero-grad"
    assert [f["code"] for f in summary["findings"]] == ["missing-zero-grad"]
    assert summary["facts"]["grad_norm_growth"] > 2


def test_doctor_through_tensorscope_run_names_the_bug_in_an_unmodified_script() -> None:
    """End to end with the real hooks: the script knows nothing of tensorscope."""
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "fixtures" / "forgot_zero_grad_train.py"
    out = run_cli("run", str(script), "--headless", "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert [f["code"] for f in summary["findings"]] == ["missing-zero-grad"]
