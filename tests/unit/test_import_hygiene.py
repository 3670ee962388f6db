"""The core stands alone: importing it loads neither textual nor rich, and the CLI's
--help loads no torch. Checked in fresh subprocesses, where nothing was imported before."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CORE_MODULES = [
    "tensorscope",
    "tensorscope.errors",
    "tensorscope.evaluate",
    "tensorscope.distributed",
    "tensorscope.rank_stats",
    "tensorscope.distributed_run",
    "tensorscope.listen_run",
    "tensorscope.storage",
    "tensorscope.viewfix",
]


def _loaded_after(code: str) -> set[str]:
    probe = code + "\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _ui_modules(mods: set[str]) -> set[str]:
    return {m for m in mods if m.split(".")[0] in {"textual", "rich"}}


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_loads_no_ui(module: str) -> None:
    assert _ui_modules(_loaded_after(f"import {module}")) == set()


def test_every_core_module_together_loads_no_ui() -> None:
    import pkgutil

    import tensorscope

    names = [f"tensorscope.{m.name}" for m in pkgutil.iter_modules(tensorscope.__path__)
             if m.name not in {"__main__"}]
    code = "\n".join(f"import {n}" for n in names)
    assert _ui_modules(_loaded_after(code)) == set(), names


def test_cli_help_loads_no_torch_and_no_ui() -> None:
    code = (
        "import sys\nsys.argv=['tensorscope','--help']\n"
        "from tensorscope.app import cli\n"
        "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
    )
    mods = _loaded_after(code)
    assert "torch" not in mods
    assert _ui_modules(mods) == set()


def test_no_bare_core_or_app_package_installed() -> None:
    import importlib.util

    assert importlib.util.find_spec("tensorscope.app") is not None
    assert importlib.util.find_spec("tensorscope.demos") is not None
    for bare in ("core", "app", "demos"):
        spec = importlib.util.find_spec(bare)
        # A stray top-level `core`/`app` would shadow users' own packages.
        assert spec is None or "tensorscope" not in str(spec.origin or ""), bare
