"""Export: golden DOT/JSON files, byte-identical output across runs, formats, missing dot.

Golden files live in tests/golden/. Regenerate them only on purpose:
``TENSORSCOPE_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_export.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tensorscope.autograd import extract
from tensorscope.errors import UserError
from tensorscope.export import dot_available, export, format_for, to_json
from tests.graph_programs import arithmetic, nested_model, two_roots

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
REGEN = os.environ.get("TENSORSCOPE_REGEN_GOLDEN") == "1"


def _graphs():
    prog = arithmetic()
    roots, net, trace = nested_model()
    return {
        "arithmetic": (extract({"y": prog["y"]}, names=prog), "none"),
        "nested_model": (extract(roots, model=net, trace=trace), "none"),
        "nested_model_collapsed": (extract(roots, model=net, trace=trace), "modules"),
        "two_roots": (extract(two_roots()), "none"),
    }


@pytest.mark.parametrize("name", ["arithmetic", "nested_model", "nested_model_collapsed", "two_roots"])
@pytest.mark.parametrize("fmt", ["dot", "json"])
def test_golden(name: str, fmt: str) -> None:
    graph, collapse = _graphs()[name]
    data = export(graph, fmt, collapse=collapse)
    path = GOLDEN / f"{name}.{fmt}"
    if REGEN:
        path.write_bytes(data)
    assert path.exists(), f"missing golden {path}: run with TENSORSCOPE_REGEN_GOLDEN=1"
    assert data == path.read_bytes(), f"{path} differs (regenerate only if the change is intended)"


def test_same_program_gives_identical_bytes() -> None:
    first = {k: (export(g, "dot", collapse=c), export(g, "json", collapse=c)) for k, (g, c) in _graphs().items()}
    second = {k: (export(g, "dot", collapse=c), export(g, "json", collapse=c)) for k, (g, c) in _graphs().items()}
    assert first == second


def test_json_schema() -> None:
    prog = arithmetic()
    data = json.loads(to_json(extract({"y": prog["y"]}, names=prog)))
    node = next(n for n in data["nodes"] if n["name"] == "MulBackward0")
    assert set(node) >= {"id", "name", "kind", "module", "saved"}
    assert {s["name"] for s in node["saved"]} == {"self", "other"}
    assert set(node["saved"][0]) >= {"name", "shape", "dtype", "version_saved", "version_now"}
    assert all(set(e) >= {"src", "dst"} for e in data["edges"])
    ids = {n["id"] for n in data["nodes"]}
    assert all(e["src"] in ids and e["dst"] in ids for e in data["edges"])


@pytest.mark.skipif(not dot_available(), reason="graphviz's dot is not installed")
def test_svg_and_png_render() -> None:
    prog = arithmetic()
    g = extract({"y": prog["y"]}, names=prog)
    svg = export(g, "svg")
    assert svg.lstrip().startswith(b"<?xml") and b"MulBackward0" in svg
    assert export(g, "png").startswith(b"\x89PNG")


def test_missing_dot_is_one_clear_line(monkeypatch) -> None:
    import tensorscope.export as ex

    monkeypatch.setattr(ex.shutil, "which", lambda name: None)
    prog = arithmetic()
    g = extract({"y": prog["y"]}, names=prog)
    with pytest.raises(UserError, match="apt-get install graphviz") as err:
        export(g, "svg")
    assert "\n" not in str(err.value)
    assert export(g, "dot").startswith(b"digraph")  # dot and json still work
    assert export(g, "json").startswith(b"{")


def test_format_from_suffix() -> None:
    assert format_for("a/graph.svg", None) == "svg"
    assert format_for("g.PNG", None) == "png"
    assert format_for("g.gv", None) == "dot"
    assert format_for(None, None) == "dot"
    assert format_for("g.svg", "json") == "json"
    with pytest.raises(UserError):
        format_for("g.txt", None)
