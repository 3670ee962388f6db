"""ConsoleInput: a one-line Python prompt with history (↑/↓) and example completions (→)."""

from __future__ import annotations

from typing import Iterable

from textual.binding import Binding
from textual.suggester import SuggestFromList
from textual.widgets import Input


class ConsoleInput(Input):
    """An Input that remembers what was run: ↑ and ↓ walk back and forth through it."""

    BINDINGS = [
        Binding("up", "recall(-1)", "Previous", show=False),
        Binding("down", "recall(1)", "Next", show=False),
    ]

    def __init__(self, examples: Iterable[str] = (), **kwargs) -> None:
        super().__init__(suggester=SuggestFromList(list(examples), case_sensitive=True), **kwargs)
        self.history: list[str] = []
        self._position = 0

    def remember(self, statement: str) -> None:
        """Add a statement that ran; the recall position goes back to the end."""
        if not self.history or self.history[-1] != statement:
            self.history.append(statement)
        self._position = len(self.history)

    def action_recall(self, step: int) -> None:
        if not self.history:
            return
        self._position = max(0, min(len(self.history), self._position + step))
        self.value = self.history[self._position] if self._position < len(self.history) else ""
        self.cursor_position = len(self.value)
