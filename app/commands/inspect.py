"""``tensorscope inspect FILE [FILE2] [--json] [--trust] [--tui]``: what a checkpoint holds.

One file: its tree of keys, every tensor (shape, dtype, saved-from device, bytes, storage),
shared storages, optimizer state, metadata and totals; TorchScript code for a TorchScript
archive. Two files: what changed from the first to the second. Loading is weights-only
unless ``--trust`` says the file may run code.
"""

from __future__ import annotations

import argparse
import json
import sys

HELP = "checkpoint explorer: tensors, shared storages, optimizer state, diffs (weights_only loading)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="a file written by torch.save or torch.jit.save")
    parser.add_argument("file2", metavar="FILE2", nargs="?",
                        help="a second checkpoint: show what changed from FILE to FILE2")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a report")
    parser.add_argument("--trust", action="store_true",
                        help="allow full unpickling (weights_only=False): this runs code from the file, "
                             "so use it only for files you trust")
    parser.add_argument("--tui", action="store_true", help="open the Inspect screen on the file(s)")


def run(args: argparse.Namespace) -> int:
    from tensorscope.checkpoint import open_checkpoint

    files = [args.file] + ([args.file2] if args.file2 else [])
    if args.tui:
        # Fail early, in one line, before the UI starts.
        for f in files:
            open_checkpoint(f, trust=args.trust)
        from tensorscope.app.app import make_app
        from tensorscope.app.context import AppContext

        ctx = AppContext(checkpoints=files, trust_checkpoints=args.trust)
        make_app(ctx, screen="inspect").run()
        return 0
    ckpts = [open_checkpoint(f, trust=args.trust) for f in files]
    diff = None
    if len(ckpts) == 2:
        from tensorscope.ckpt_diff import diff_checkpoints

        diff = diff_checkpoints(ckpts[0], ckpts[1])
    if args.json:
        if diff is None:
            doc = ckpts[0].to_json()
        else:
            doc = {"mode": "diff", "a": ckpts[0].to_json(), "b": ckpts[1].to_json(), "diff": diff.to_json()}
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    _print_report(ckpts, diff)
    return 0


MAX_PIPED_WIDTH = 400
"""Piped output is never wider than this (a table of very long keys wraps there)."""


def _print_report(ckpts: list, diff) -> None:
    from rich.rule import Rule

    from tensorscope.app import inspect_report as report

    parts: list = []
    if diff is not None:
        parts += [report.diff_summary(diff), report.diff_table(diff)]
        meta = report.diff_metadata_table(diff)
        if meta is not None:
            parts.append(meta)
    else:
        ckpt = ckpts[0]
        parts += [report.header(ckpt), report.tensors_table(ckpt)]
        parts += [p for p in (report.shared_table(ckpt), report.metadata_table(ckpt))
                  if p is not None]
        parts += list(report.optimizer_tables(ckpt))
        parts += list(report.totals_tables(ckpt))
        if ckpt.code:
            parts.append(Rule("TorchScript code"))
            parts += list(report.code_renderables(ckpt))
    console = _console(parts)
    for part in parts:
        console.print(part)


def _console(parts: list):
    """A terminal's width on a terminal. Piped into a file or another program, where Rich
    would assume 80 columns and cut the tables' right-hand columns off, as wide as the
    widest table needs, so that nothing is lost. COLUMNS, when set, wins either way."""
    import io
    import os

    from rich.console import Console
    from rich.measure import Measurement

    if sys.stdout.isatty() or os.environ.get("COLUMNS"):
        return Console()
    probe = Console(width=MAX_PIPED_WIDTH, file=io.StringIO())
    widest = max((Measurement.get(probe, probe.options, part).maximum for part in parts),
                 default=80)
    return Console(width=max(80, min(widest, MAX_PIPED_WIDTH)))
