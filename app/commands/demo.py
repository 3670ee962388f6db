"""``tensorscope demo [NAME] [--headless] [--json]``: the syllabus's lessons and bugs, runnable.

No NAME lists them. NAME opens the TUI on the scenario's landing screen; ``--headless``
runs it without UI and prints its measured facts and the doctor's findings (``--json``:
one JSON line, the last line of stdout).
"""

from __future__ import annotations

import argparse
import json

HELP = "list the demo scenarios, open one in the TUI, or run it headless"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", metavar="NAME", help="scenario to open or run")
    parser.add_argument("--headless", action="store_true", help="run without the UI")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from tensorscope.demos import catalogue, get

    if not args.name:
        items = catalogue()
        if args.json:
            print(json.dumps([{"name": s.name, "title": s.title} for s in items]))
        else:
            width = max(len(s.name) for s in items)
            for s in items:
                print(f"{s.name:<{width}}  {s.title}")
            print("\nOpen one: tensorscope demo NAME   ·   run it headless: tensorscope demo NAME --headless")
        return 0
    scenario = get(args.name)
    if args.headless or args.json:
        summary = scenario.run_headless()
        if args.json:
            print(json.dumps(summary, default=str, allow_nan=False))
        else:
            _print_summary(summary)
        return 0
    from tensorscope.app.app import make_app
    from tensorscope.app.context import AppContext

    import sys

    sys.stderr.write(f"tensorscope: running demo {scenario.name}…\n")
    make_app(AppContext(**scenario.context_fields()), screen=landing_screen(scenario)).run()
    return 0


def landing_screen(scenario) -> str:
    """The first of the scenario's screens this build has (the Demos screen otherwise)."""
    from tensorscope.app.screens import REGISTRY

    available = {e.name for e in REGISTRY}
    return next((s for s in scenario.screens if s in available), "demos")


def _print_summary(summary: dict) -> None:
    print(f"{summary['name']}: {summary['title']}")
    for label, part in (("code", summary), ("fixed", summary.get("fixed"))):
        if part is None:
            continue
        print(f"\n[{label}]")
        for key, value in part["facts"].items():
            if key == "curve":
                continue
            print(f"  {key}: {value}")
        findings = part["findings"]
        print("  findings: " + (", ".join(f"{f['code']} ({f['severity']})" for f in findings) or "none"))
