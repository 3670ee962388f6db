"""Rich renderables for the doctor's findings (as Finding objects or their JSON dicts)."""

from __future__ import annotations

from typing import Any, Iterable

from rich.console import Group
from rich.table import Table
from rich.text import Text

from tensorscope.app.quantities import plural

SEVERITY_STYLE = {"error": ("✖", "bold red"), "warning": ("▲", "bold yellow"), "info": ("●", "bold blue")}


def as_dict(finding: Any) -> dict[str, Any]:
    return finding if isinstance(finding, dict) else finding.to_json()


def finding_header(finding: Any) -> Text:
    f = as_dict(finding)
    mark, style = SEVERITY_STYLE.get(f["severity"], ("•", "bold"))
    return Text.assemble((f"{mark} {f['severity']:<7} ", style), (f["title"], "bold"), "  ", (f["code"], "dim"))


def evidence_table(evidence: dict[str, Any]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="cyan", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in evidence.items():
        table.add_row(key.replace("_", " "), _fmt(value))
    return table


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value) or "—"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    return str(value)


def findings_renderable(findings: Iterable[Any], *, compact: bool = False) -> Group:
    items = [as_dict(f) for f in findings]
    if not items:
        return Group(Text("doctor: no findings", style="green"))
    parts: list[Any] = [Text(f"doctor: {len(items)} {plural(len(items), 'finding')}", style="bold")]
    for f in items:
        parts.append(finding_header(f))
        if not compact:
            parts.append(evidence_table(f["evidence"]))
        parts.append(Text.assemble(("  fix: ", "green"), f["fix"]))
    return Group(*parts)
