"""The app's screens, one module each, and the registry that the home screen lists.

Each entry becomes an app mode (its own screen stack, kept while you visit others), a
key binding, and a command in the palette.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class ScreenEntry:
    name: str
    """Mode name, also used by ``make_app(screen=...)`` and the CLI."""
    title: str
    key: str
    """Key binding that opens the screen from anywhere."""
    target: str
    """``module:Class`` of the Screen, imported on first visit."""
    summary: str
    """One line for the home screen and the command palette."""

    def load(self) -> type:
        module_name, _, class_name = self.target.partition(":")
        return getattr(importlib.import_module(module_name), class_name)


REGISTRY: tuple[ScreenEntry, ...] = (
    ScreenEntry("storage", "Storage", "s", "tensorscope.app.screens.storage:StorageScreen",
                "tensors as views over flat storage: strides, offsets, aliasing"),
    ScreenEntry("graph", "Graph", "g", "tensorscope.app.screens.graph:GraphScreen",
                "the autograd graph: nodes, saved tensors, versions, live backward"),
    ScreenEntry("model", "Model", "m", "tensorscope.app.screens.model:ModelScreen",
                "modules, parameters, buffers; live hook stats while the model trains"),
    ScreenEntry("training", "Training", "t", "tensorscope.app.screens.training:TrainingScreen",
                "a run, live (tensorscope run) or recorded (replay): loss, lr, grads, memory, AMP"),
    ScreenEntry("doctor", "Doctor", "d", "tensorscope.app.screens.doctor:DoctorScreen",
                "bugs named from a run or a demo: evidence, fix, and where to look"),
    ScreenEntry("demos", "Demos", "e", "tensorscope.app.screens.demos:DemosScreen",
                "the syllabus's lessons and bugs: code, fix, and what they measure"),
    ScreenEntry("inspect", "Inspect", "i", "tensorscope.app.screens.inspect:InspectScreen",
                "checkpoint files: keys, tensors, shared storages, optimizer state, diffs"),
)


def function_key(e: ScreenEntry) -> str:
    """The function key that opens ``e`` even while a text input has focus (F2, F3, ...).

    Letter keys are typed into inputs, so every screen also gets a function key; F1 is home.
    """
    return f"f{REGISTRY.index(e) + 2}"


def entry(name: str) -> ScreenEntry:
    for item in REGISTRY:
        if item.name == name:
            return item
    raise KeyError(name)
