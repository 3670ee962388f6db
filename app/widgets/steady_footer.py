"""SteadyFooter: Textual's Footer, rebuilt only when the keys it shows really change.

Textual's Footer recomposes (removes and mounts every key, then a full screen layout) each
time the screen's bindings are updated, which happens on every focus change. On the Training
screen, with a run eating the CPU, that rebuild cost a layout pass of tens of ms per Tab
press even though the footer showed the same keys before and after.
"""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer


class SteadyFooter(Footer):
    """A Footer that skips its rebuild when the shown bindings are the same as last time."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._shown: tuple | None = None

    def _signature(self) -> tuple:
        """What compose() would draw: every shown binding with its state and text."""
        return tuple(
            (key, binding.action, binding.description, binding.group, enabled, tooltip)
            for key, (_, binding, enabled, tooltip) in self.screen.active_bindings.items()
            if binding.show or key == self.app.COMMAND_PALETTE_BINDING
        )

    def bindings_changed(self, screen: Screen) -> None:
        if self.is_attached and screen is self.screen and screen.app.app_focus:
            signature = self._signature()
            if signature == self._shown and self._bindings_ready:
                return
            self._shown = signature
        super().bindings_changed(screen)
