"""Lay a graph view out on a grid of character cells with graphviz's ``dot -Tjson``.

Boxes are sized in cells before layout (one column is 0.1 inch, one row 0.2 inch, the
shape of a terminal cell), so dot's positions map straight onto the grid. Edge splines
are sampled and rasterised into 4-connected cell paths; each cell keeps which sides its
line leaves by (up, down, left, right), which is all a renderer needs to pick ``│ ─ ┌ ┼``.

``dot`` runs as a child process that a cancel event can kill: a stale layout of a big
graph never keeps the CPU busy after the user moved on.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tensorscope.autograd import AutogradGraph, Cancelled, GraphView, ViewNode, shape_text
from tensorscope.errors import UserError
from tensorscope.export import INSTALL_DOT, dot_available, to_dot

COL_IN = 0.1
"""Inches per character column."""
ROW_IN = 0.2
"""Inches per character row."""
PT = 72.0

UP, DOWN, LEFT, RIGHT = 1, 2, 4, 8
"""Sides a line leaves a cell by (bits of ``Layout.lines`` values)."""

ZOOMS = ("detail", "compact", "overview")
"""Zoom levels: boxes with two lines of text, one-line boxes, short one-line tags."""


@dataclass(slots=True)
class Box:
    """A laid-out box: top-left cell, size in cells, and the text lines inside it."""

    key: str
    x: int
    y: int
    w: int
    h: int
    lines: list[str]
    kind: str
    node_id: int | None


@dataclass
class Layout:
    """A view laid out on the character grid."""

    width: int
    height: int
    boxes: list[Box]
    lines: dict[tuple[int, int], int] = field(default_factory=dict)
    """Cell -> sides its edge lines leave by (UP | DOWN | LEFT | RIGHT)."""
    arrows: dict[tuple[int, int], str] = field(default_factory=dict)
    """Cell -> arrow head drawn where an edge enters a box."""
    seconds: float = 0.0
    """Time ``dot`` took."""
    zoom: str = "detail"
    ports: dict[tuple[int, int], str] = field(default_factory=dict)
    """Cells on a box's bottom border where an edge leaves it (drawn as ``┬``)."""

    def box_at(self, x: int, y: int) -> Box | None:
        for b in self.boxes:
            if b.x <= x < b.x + b.w and b.y <= y < b.y + b.h:
                return b
        return None

    def find(self, key: str) -> Box | None:
        for b in self.boxes:
            if b.key == key:
                return b
        return None


def box_text(graph: AutogradGraph, box: ViewNode, zoom: str) -> list[str]:
    """The text lines shown inside a box at ``zoom``."""
    if box.kind == "module":
        title = box.label
        sub = f"{box.count} node{'s' if box.count != 1 else ''} [+]"
    else:
        node = graph.nodes[box.node_id]
        title = node.label
        sub = shape_text(node.tensor) if node.tensor is not None else ""
        if node.kind == "leaf" and node.tensor is not None and node.tensor.grad is not None:
            sub = f"{sub} · grad ✓"
    if zoom == "detail":
        return [title, sub] if sub else [title]
    if zoom == "compact":
        return [title]
    short = title.removesuffix("Backward0").removesuffix("Backward1")
    return [short[:10]]


def box_size(lines: list[str], zoom: str) -> tuple[int, int]:
    """(columns, rows) of a box holding ``lines`` (borders included at detail zoom)."""
    text_w = max(len(s) for s in lines)
    if zoom == "detail":
        return text_w + 4, len(lines) + 2
    return text_w + 2, 1


def layout_dot(graph: AutogradGraph, view: GraphView, zoom: str) -> tuple[str, dict[str, list[str]]]:
    """The DOT text the grid layout runs on, and each box's text lines."""
    texts = {b.key: box_text(graph, b, zoom) for b in view.nodes}

    def size(box: ViewNode) -> tuple[float, float]:
        w, h = box_size(texts[box.key], zoom)
        return w * COL_IN, h * ROW_IN

    sep = {"detail": "ranksep=0.4 nodesep=0.3", "compact": "ranksep=0.4 nodesep=0.2",
           "overview": "ranksep=0.2 nodesep=0.1"}[zoom]
    return to_dot(graph, view, node_size=size, graph_attrs=sep), texts


def run_dot_json(dot_text: str, cancel: threading.Event | None = None) -> dict[str, Any]:
    """``dot -Tjson`` on ``dot_text``; killed (and Cancelled raised) when ``cancel`` is set."""
    if not dot_available():
        raise UserError(f"graphviz's 'dot' program is missing: {INSTALL_DOT}")
    proc = subprocess.Popen(["dot", "-Tjson"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    result: dict[str, Any] = {}

    def talk() -> None:
        result["out"], result["err"] = proc.communicate(dot_text.encode("utf-8"))

    talker = threading.Thread(target=talk, name="tensorscope-dot", daemon=True)
    talker.start()
    while talker.is_alive():
        talker.join(0.05)
        if cancel is not None and cancel.is_set() and talker.is_alive():
            proc.kill()
            talker.join()
            raise Cancelled()
    if proc.returncode != 0:
        err = (result.get("err") or b"").decode("utf-8", "replace").strip().splitlines()
        raise UserError(f"dot failed: {err[0] if err else 'exit ' + str(proc.returncode)}")
    return json.loads(result["out"])


def layout(graph: AutogradGraph, view: GraphView, zoom: str = "detail",
           cancel: threading.Event | None = None) -> Layout:
    """Lay ``view`` out at ``zoom`` with dot; positions in character cells."""
    if zoom not in ZOOMS:
        raise UserError(f"unknown zoom '{zoom}' (choose from: {', '.join(ZOOMS)})")
    text, texts = layout_dot(graph, view, zoom)
    started = time.perf_counter()
    data = run_dot_json(text, cancel)
    seconds = time.perf_counter() - started
    return from_dot_json(data, view, texts, zoom, seconds)


def from_dot_json(data: dict[str, Any], view: GraphView, texts: dict[str, list[str]],
                  zoom: str, seconds: float = 0.0) -> Layout:
    """Turn dot's JSON output into boxes and rasterised edges on the grid."""
    bb = [float(v) for v in data.get("bb", "0,0,0,0").split(",")]
    height_pt = bb[3]
    by_key = {b.key: b for b in view.nodes}
    boxes: list[Box] = []
    gvid_box: dict[int, Box] = {}
    for obj in data.get("objects", []):
        key = obj.get("name")
        vn = by_key.get(key)
        if vn is None or "pos" not in obj:
            continue
        cx, cy = (float(v) for v in obj["pos"].split(","))
        w, h = box_size(texts[key], zoom)
        col = int(round(cx / (COL_IN * PT) - w / 2))
        row = int(round((height_pt - cy) / (ROW_IN * PT) - h / 2))
        box = Box(key, max(col, 0), max(row, 0), w, h, texts[key], vn.kind, vn.node_id)
        boxes.append(box)
        gvid_box[obj["_gvid"]] = box
    lines: dict[tuple[int, int], int] = {}
    arrows: dict[tuple[int, int], str] = {}
    occupied = set()
    for b in boxes:
        for yy in range(b.y, b.y + b.h):
            for xx in range(b.x, b.x + b.w):
                occupied.add((xx, yy))
    ports: dict[tuple[int, int], str] = {}
    for edge in data.get("edges", []):
        pos = edge.get("pos")
        head = gvid_box.get(edge.get("head"))
        tail = gvid_box.get(edge.get("tail"))
        if not pos or head is None or tail is None:
            continue
        points = _spline_points(pos, height_pt)
        inner = [(int(px), int(py)) for px, py in points]
        inner = [c for c in inner if c not in occupied]
        if head.y > tail.y + tail.h:
            # The usual top-down edge: leave the tail's bottom border, enter the head's top.
            sx = min(max(int(points[0][0]), tail.x + 1), tail.x + tail.w - 2)
            ex = min(max(int(points[-1][0]), head.x + 1), head.x + head.w - 2)
            start, end = (sx, tail.y + tail.h), (ex, head.y - 1)
            inner = [c for c in inner if start[1] < c[1] < end[1]]
            cells = _raster([start, *inner, end])
            ports[(sx, tail.y + tail.h - 1)] = "┬"
            lines[start] = lines.get(start, 0) | UP  # attach to the port on the border
        else:
            cells = _raster(inner)
        cells = [c for c in cells if c not in occupied]
        _trace(cells, lines)
        if cells:
            last = cells[-1]
            arrows[last] = _arrow(last, head)
    width = max((b.x + b.w for b in boxes), default=0) + 1
    height = max((b.y + b.h for b in boxes), default=0) + 1
    for (x, y) in list(lines):
        width = max(width, x + 1)
        height = max(height, y + 1)
    boxes.sort(key=lambda b: (b.y, b.x))
    return Layout(width, height, boxes, lines, arrows, seconds, zoom, ports)


def _arrow(cell: tuple[int, int], head: Box) -> str:
    x, y = cell
    if y < head.y:
        return "▼"
    if y >= head.y + head.h:
        return "▲"
    return "▶" if x < head.x else "◀"


def _spline_points(pos: str, height_pt: float) -> list[tuple[float, float]]:
    """Sampled points (in cells) along a dot edge spline ``[e,x,y ]p0 p1 p2 p3 ...``."""
    end = None
    pts: list[tuple[float, float]] = []
    for part in pos.split():
        if part.startswith("e,"):
            _, x, y = part.split(",")
            end = (float(x), float(y))
        elif part.startswith("s,"):
            continue
        else:
            x, y = part.split(",")[:2]
            pts.append((float(x), float(y)))
    samples: list[tuple[float, float]] = []
    for i in range(0, len(pts) - 3, 3):
        p0, p1, p2, p3 = pts[i:i + 4]
        for k in range(9):
            t = k / 8
            a, b, c, d = (1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t * t * (1 - t), t ** 3
            samples.append((a * p0[0] + b * p1[0] + c * p2[0] + d * p3[0],
                            a * p0[1] + b * p1[1] + c * p2[1] + d * p3[1]))
    if not samples:
        samples = pts
    if end is not None:
        samples.append(end)
    return [(x / (COL_IN * PT), (height_pt - y) / (ROW_IN * PT)) for x, y in samples]


def _raster(points: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """A 4-connected path of cells through ``points``.

    Each hop goes vertically first (edges in a top-down layout are mostly vertical, so
    corners stay few), except the last, which turns first so that it ends going down
    into its arrow."""
    cells: list[tuple[int, int]] = []
    last_hop = len(points) - 1
    for i, cell in enumerate(points):
        if not cells:
            cells.append(cell)
            continue
        x, y = cells[-1]
        tx, ty = cell
        vertical_first = i != last_hop
        while (x, y) != (tx, ty):
            if (vertical_first and y != ty) or (not vertical_first and x == tx):
                y += 1 if ty > y else -1
            else:
                x += 1 if tx > x else -1
            cells.append((x, y))
    return cells


def _trace(cells: list[tuple[int, int]], lines: dict[tuple[int, int], int]) -> None:
    for (x0, y0), (x1, y1) in zip(cells, cells[1:]):
        if abs(x1 - x0) + abs(y1 - y0) != 1:
            continue  # a gap left by a box the spline touched: skip, don't draw across it
        if x1 > x0:
            a, b = RIGHT, LEFT
        elif x1 < x0:
            a, b = LEFT, RIGHT
        elif y1 > y0:
            a, b = DOWN, UP
        else:
            a, b = UP, DOWN
        lines[(x0, y0)] = lines.get((x0, y0), 0) | a
        lines[(x1, y1)] = lines.get((x1, y1), 0) | b
    if len(cells) == 1:
        lines.setdefault(cells[0], UP | DOWN)


LINE_CHARS = {
    0: " ", UP: "│", DOWN: "│", UP | DOWN: "│", LEFT: "─", RIGHT: "─", LEFT | RIGHT: "─",
    DOWN | RIGHT: "╭", DOWN | LEFT: "╮", UP | RIGHT: "╰", UP | LEFT: "╯",
    UP | DOWN | RIGHT: "├", UP | DOWN | LEFT: "┤", DOWN | LEFT | RIGHT: "┬",
    UP | LEFT | RIGHT: "┴", UP | DOWN | LEFT | RIGHT: "┼",
}
"""Box-drawing character for each combination of sides (rounded corners)."""
