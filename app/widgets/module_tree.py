"""ModuleTree: a model's named_modules as a tree, with parameter counts and hook markers."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from tensorscope.anatomy import ModuleRow


def compact(n: int) -> str:
    """1234 -> "1.2k", 3_400_000 -> "3.4M"."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


class ModuleTree(Tree[str]):
    """One node per module (data: its path, "" for the root).

    ● marks a module with a live hook; ○ one that is selected for hooks but detached now.
    """

    DEFAULT_CSS = """
    ModuleTree { height: 1fr; border: round $primary-darken-2; padding: 0 1; }
    ModuleTree:focus { border: round $accent; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__("model", data="", **kwargs)
        self.border_title = "modules  (● hooked · ○ hooked once it runs)"
        self._live = False
        self._rows: dict[str, ModuleRow] = {}
        self._node_by_path: dict[str, TreeNode[str]] = {}

    def load(self, rows: list[ModuleRow], hooked: set[str], live: bool = False) -> None:
        """Rebuild the tree from ``rows`` (named_modules order: parents come first)."""
        self.clear()
        self._live = live
        self._rows = {r.path: r for r in rows}
        self._node_by_path = {"": self.root}
        self.root.data = ""
        for row in rows:
            if not row.path:
                continue
            parent_path = row.path.rpartition(".")[0]
            parent = self._node_by_path.get(parent_path, self.root)
            node = parent.add(self._label(row, row.path in hooked), data=row.path,
                              expand=row.depth < 3, allow_expand=row.children > 0)
            self._node_by_path[row.path] = node
        self.root.set_label(self._label(self._rows[""], "" in hooked))
        self.root.expand()

    def mark(self, hooked: set[str], live: bool) -> None:
        """Refresh the hook markers (``live``: hooks are attached right now)."""
        self._live = live
        for path, node in self._node_by_path.items():
            row = self._rows.get(path)
            if row is not None:
                node.set_label(self._label(row, path in hooked))

    def _label(self, row: ModuleRow, hooked: bool) -> Text:
        name = row.path.rpartition(".")[2] if row.path else "(model)"
        marker = ("● ", "green") if hooked and self._live else ("○ ", "dim") if hooked else ("  ", "")
        text = Text.assemble(marker, (name, "bold"), "  ", (row.type, "cyan"))
        if row.params:
            frozen = row.params - row.trainable
            text.append(f"  {compact(row.params)}", style="")
            if frozen:
                text.append(f" ({compact(frozen)} frozen)", style="yellow")
        return text
