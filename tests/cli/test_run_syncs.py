"""`tensorscope run --headless --json` names a per-step .item() in an unmodified script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "item_sync_train.py"
pytestmark = pytest.mark.slow


def findings(*extra: str) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "tensorscope", "run", str(FIXTURE), *extra,
                          "--headless", "--json"], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["hook_errors"] == 0
    return summary["findings"]


def test_item_every_step_is_named_in_a_real_run() -> None:
    named = {f["code"]: f for f in findings()}
    assert "item-sync-in-loop" in named
    assert named["item-sync-in-loop"]["evidence"]["steps_with_sync"] >= 3


def test_fixed_script_is_not_named() -> None:
    assert "item-sync-in-loop" not in {f["code"] for f in findings("--fixed")}
