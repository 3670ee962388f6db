"""Autograd graph -> DOT / SVG / PNG / JSON.

DOT text is written here directly (one pass over a :class:`~tensorscope.autograd.GraphView`)
so that it is deterministic: the same program gives byte-identical DOT and JSON (no
addresses, no times; ids come from the graph's stable numbering). SVG and PNG are drawn
by graphviz's ``dot``, called once on that text through the graphviz package, so a full
SVG costs what ``dot`` costs on the same DOT.

Data flows top to bottom, as in the forward pass: leaves at the top, the root at the
bottom; an edge goes from the node that produced a value to the node that consumed it.
"""

from __future__ import annotations

import json
import shutil
from typing import Any, Iterable

from tensorscope.autograd import (BACKWARD, LEAF, LEAF_NO_GRAD, ROOT, AutogradGraph, GraphView,
                                  build_view, node_saved, shape_text)
from tensorscope.errors import UserError

FORMATS = ("dot", "svg", "png", "json")
COLLAPSE = ("none", "modules")

INSTALL_DOT = ("install graphviz: sudo apt-get install graphviz (macOS: brew install graphviz; "
               "conda: conda install graphviz)")

# Fill colours by node kind (light, so labels stay readable in any viewer).
_STYLE = {
    ROOT: 'shape=box style="rounded,filled" fillcolor="#c8e6c9"',
    BACKWARD: 'shape=box style="filled" fillcolor="#eceff1"',
    LEAF: 'shape=box style="rounded,filled" fillcolor="#bbdefb"',
    LEAF_NO_GRAD: 'shape=box style="rounded,dashed"',
    "module": 'shape=box3d style="filled" fillcolor="#fff9c4"',
}


def dot_available() -> bool:
    """True when graphviz's ``dot`` program is on PATH."""
    return shutil.which("dot") is not None


def view_for(graph: AutogradGraph, collapse: str = "none",
             expanded: Iterable[str] | None = None) -> GraphView:
    """The view an export draws: every node (``none``), or every top-level module folded
    into one box (``modules``), or the given ``expanded`` set (the TUI's current view)."""
    if collapse not in COLLAPSE:
        raise UserError(f"unknown --collapse '{collapse}' (choose from: {', '.join(COLLAPSE)})")
    if collapse == "none":
        return build_view(graph, collapse="none")
    return build_view(graph, expanded if expanded is not None else {""}, collapse="modules")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _box_label(graph: AutogradGraph, box: Any) -> str:
    if box.kind == "module":
        return f"{box.label}\n{box.count} node{'s' if box.count != 1 else ''}"
    node = graph.nodes[box.node_id]
    if node.tensor is not None:
        return f"{node.label}\n{shape_text(node.tensor)}"
    return node.label


def to_dot(graph: AutogradGraph, view: GraphView | None = None, *,
           node_size: Any = None, graph_attrs: str = "") -> str:
    """DOT text for ``view`` (default: every node). ``node_size(box) -> (w_in, h_in)`` fixes
    box sizes (the TUI sizes them in character cells)."""
    view = view or build_view(graph, collapse="none")
    lines = ["digraph autograd {",
             f'  graph [rankdir=TB ranksep=0.35 nodesep=0.25{" " + graph_attrs if graph_attrs else ""}]',
             '  node [fontname="Helvetica" fontsize=10 height=0.3 margin="0.08,0.04"]',
             '  edge [arrowsize=0.6 color="#607d8b"]']
    for box in view.nodes:
        attrs = [f"label={_quote(_box_label(graph, box))}", _STYLE.get(box.kind, "")]
        if box.node_id is not None and graph.nodes[box.node_id].freed:
            attrs.append('color="#b71c1c" fontcolor="#b71c1c"')
        if node_size is not None:
            w, h = node_size(box)
            attrs.append(f"width={w:.2f} height={h:.2f} fixedsize=true")
        lines.append(f"  {_quote(box.key)} [{' '.join(a for a in attrs if a)}]")
    for src, dst in view.edges:
        lines.append(f"  {_quote(src)} -> {_quote(dst)}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_json(graph: AutogradGraph, view: GraphView | None = None) -> str:
    """The graph as JSON text: ``nodes`` (id, name, kind, label, module, saved) and ``edges``
    (src, dst, slot), plus ``modules`` (path -> class) and, for a collapsed view, ``view``."""
    graph.load_saved()
    nodes = []
    for n in graph.nodes:
        entry: dict[str, Any] = {"id": n.id, "name": n.name, "kind": n.kind, "label": n.label,
                                 "module": n.module,
                                 "saved": [s.to_json() for s in node_saved(n)]}
        if n.kind in (LEAF, ROOT, LEAF_NO_GRAD) and n.tensor is not None:
            entry["shape"] = list(n.tensor.shape)
            entry["dtype"] = str(n.tensor.dtype).removeprefix("torch.")
        if n.freed:
            entry["freed"] = True
        nodes.append(entry)
    data: dict[str, Any] = {
        "nodes": nodes,
        "edges": [{"src": e.src, "dst": e.dst, "slot": e.slot} for e in graph.edges],
        "modules": graph.module_types,
        "attribution": graph.attribution,
    }
    if view is not None and any(b.kind == "module" for b in view.nodes):
        data["view"] = {
            "boxes": [{"key": b.key, "label": b.label, "kind": b.kind, "count": b.count}
                      for b in view.nodes],
            "edges": [{"src": s, "dst": d} for s, d in view.edges],
        }
    return json.dumps(data, indent=1) + "\n"


def render(dot_text: str, fmt: str) -> bytes:
    """Run ``dot`` once on ``dot_text`` and return the image bytes (svg or png)."""
    if fmt not in ("svg", "png", "json"):
        raise UserError(f"cannot render format '{fmt}' with dot")
    if not dot_available():
        raise UserError(f"graphviz's 'dot' program is missing, so {fmt} export is unavailable "
                        f"(dot and json export still work): {INSTALL_DOT}")
    import graphviz

    try:
        return graphviz.pipe("dot", fmt, dot_text.encode("utf-8"), quiet=True)
    except graphviz.ExecutableNotFound:
        raise UserError(f"graphviz's 'dot' program is missing: {INSTALL_DOT}") from None
    except graphviz.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode("utf-8", "replace").strip().splitlines()
        raise UserError(f"dot failed: {detail[0] if detail else exc}") from None


def export(graph: AutogradGraph, fmt: str, *, collapse: str = "none",
           expanded: Iterable[str] | None = None) -> bytes:
    """The graph in ``fmt`` (dot, svg, png or json) as bytes."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format '{fmt}' (choose from: {', '.join(FORMATS)})")
    view = view_for(graph, collapse, expanded)
    if fmt == "json":
        return to_json(graph, view if collapse == "modules" else None).encode("utf-8")
    graph.load_saved()  # freed nodes are drawn in red
    text = to_dot(graph, view)
    if fmt == "dot":
        return text.encode("utf-8")
    return render(text, fmt)


def format_for(path: str | None, fmt: str | None) -> str:
    """The format to write: ``fmt`` when given, else the suffix of ``path``, else dot."""
    if fmt:
        if fmt not in FORMATS:
            raise UserError(f"unknown format '{fmt}' (choose from: {', '.join(FORMATS)})")
        return fmt
    if path:
        suffix = path.rpartition(".")[2].lower() if "." in path else ""
        if suffix == "gv":
            return "dot"
        if suffix in FORMATS:
            return suffix
        raise UserError(f"cannot tell the format from '{path}': use a .dot, .svg, .png or "
                        ".json name, or --format")
    return "dot"
