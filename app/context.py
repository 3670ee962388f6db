"""What the app was opened on: the state screens share, set up by the CLI or a test.

Screens read it as ``self.app.context``. It holds live Python objects (tensors, models)
and is never sent anywhere. Each capability adds the field it needs, with a default that
means "nothing given".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class AppContext:
    """Everything a screen may be opened on."""

    namespace: dict[str, Any] | None = None
    """The console namespace (tensors by name) shared by the Storage and Graph screens."""

    statements: list[str] = field(default_factory=list)
    """Statements the Storage console runs on start, shown in its history."""

    graph_roots: dict[str, Any] | None = None
    """Tensors whose autograd graph the Graph screen opens on, by display name."""

    model: Any | None = None
    """An nn.Module for the Model screen (and module attribution on the Graph screen)."""

    model_step: Any | None = None
    """A callable running one training step of ``model``: the Model screen runs it live."""

    run: Any | None = None
    """A live run (``tensorscope run``) or a recorded one (``replay``) for Training/Doctor."""

    own_run: Any | None = None
    """The script this app was started to watch (``tensorscope run``): quitting asks about
    it while it runs, even after a demo's run took ``run``'s place on screen."""

    scenario_fields: tuple[str, ...] = ()
    """The fields the last loaded demo set (screens/demos.py): the next demo clears those
    it does not set, and never what the user opened the app on."""

    checkpoints: list[str] = field(default_factory=list)
    """Checkpoint files for the Inspect screen (two mean a diff)."""

    trust_checkpoints: bool = False
    """Load those files with full unpickling (``inspect --trust``): they may run code."""

    demo: Any | None = None
    """The demo scenario the app was opened on, if any."""

    console_grad_enabled: bool = True
    """Grad mode for the console's statements. Each runs on a thread of its own and grad
    mode belongs to a thread, so a statement that sets it (``torch.set_grad_enabled(False)``)
    hands it on to the next here, as a REPL would."""

    def ensure_namespace(self) -> dict[str, Any]:
        """The shared namespace, created on first use with torch, nn and F in scope."""
        if self.namespace is None:
            from tensorscope.evaluate import base_namespace

            self.namespace = base_namespace()
        return self.namespace
