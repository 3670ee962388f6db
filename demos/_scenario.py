"""The Scenario type every demo module builds, and the Observation a run produces.

A scenario is a lesson (markdown), the code that shows it (a bug, with its fixed twin when it
is one), the screens that show it, and a ``measure(fixed)`` function that really runs the
code's loop and returns the measured facts plus what the doctor needs (records, model,
errors, graph). The doctor never sees the scenario's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from tensorscope.runsource import FinishedRun


@dataclass
class Observation:
    """What one run of a scenario measured."""

    facts: dict[str, Any]
    records: list[Any] = field(default_factory=list)
    model: Any = None
    errors: list[Any] = field(default_factory=list)
    graph: Any = None

    def findings(self) -> list[Any]:
        from tensorscope.doctor import diagnose

        return diagnose(self.records, model=self.model, errors=self.errors, graph=self.graph)


@dataclass(frozen=True, eq=False)
class Scenario:
    """One lesson or bug of the syllabus, runnable headless and openable in the TUI."""

    name: str
    title: str
    lesson: str
    code: str
    fixed_code: str | None
    screens: tuple[str, ...]
    """Screens that show it; the first is where ``tensorscope demo NAME`` lands."""
    measure: Callable[[bool], Observation]
    """Runs the code (``fixed=True``: its fixed twin) and returns what it measured."""
    finding: str | None = None
    """The doctor code the bug yields (None for a lesson no detector names)."""
    context: Callable[[], dict[str, Any]] | None = None
    roots: Callable[[], dict[str, Any]] | None = None

    @property
    def is_bug(self) -> bool:
        return self.fixed_code is not None

    def context_fields(self) -> dict[str, Any]:
        """AppContext fields that open the TUI's screens on this scenario."""
        fields = dict(self.context()) if self.context else {}
        fields.setdefault("demo", self)
        if "training" in self.screens and "run" not in fields:
            fields["run"] = DemoRun(self)
        if "graph_roots" not in fields and self.roots is not None:
            fields["graph_roots"] = self.roots()
        return fields

    def graph_roots(self) -> dict[str, Any] | None:
        """Tensors whose autograd graph shows the lesson (None when no graph does)."""
        return self.roots() if self.roots else None

    def observe(self, fixed: bool = False) -> tuple[dict[str, Any], list[Any]]:
        obs = self.measure(fixed)
        return obs.facts, obs.findings()

    def run_headless(self) -> dict[str, Any]:
        """Run the code (and its fixed twin) and return facts and findings as plain data."""
        facts, findings = self.observe(False)
        summary: dict[str, Any] = {
            "name": self.name, "title": self.title, "facts": facts,
            "findings": [f.to_json() for f in findings],
        }
        if self.is_bug:
            fixed_facts, fixed_findings = self.observe(True)
            summary["fixed"] = {"facts": fixed_facts,
                                "findings": [f.to_json() for f in fixed_findings]}
        return _plain(summary)


def _plain(value: Any) -> Any:
    """Strict-JSON data: NaN/inf become the strings "nan"/"inf" (JSON has no such numbers)."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class DemoRun(FinishedRun):
    """A scenario's measured steps, offered to the Training and Doctor screens as a
    finished recorded run (the same ``snapshot()`` a replayed ``--record`` file gives)."""

    def __init__(self, scenario: Scenario) -> None:
        # Measured here, once, before any screen polls: snapshot() must stay instant
        # because the Training screen calls it on the UI thread.
        from tensorscope.runsource import RunSnapshot

        self.scenario = scenario
        obs = scenario.measure(False)
        self.observation = obs
        """The whole measurement (records, model, errors, graph) for the doctor."""
        self._snapshot = RunSnapshot(
            source="replay", label=f"demo:{scenario.name}", records=tuple(obs.records),
            state="recorded", meta={"script": f"tensorscope demo {scenario.name}", "ended": True,
                                    "demo": scenario.name}, version=1)
