"""`tensorscope replay FILE`: open a recorded run (``run --record FILE``) in the Training screen."""

from __future__ import annotations

import argparse

from tensorscope.app.quantities import plural

HELP = "open a recorded run (JSON Lines from run --record) in the Training screen"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="a record file written by run --record")


def run(args: argparse.Namespace) -> int:
    from tensorscope.runsource import ReplayRun

    source = ReplayRun(args.file)
    if not source.snapshot().records and not source.snapshot().meta.get("script"):
        from tensorscope.errors import UserError

        dropped = source.dropped
        why = ("no step or run lines in it" if not dropped else
               f"{dropped} {plural(dropped, 'line')} could not be read")
        raise UserError(f"{args.file} holds no tensorscope records ({why})")
    from tensorscope.app.app import make_app
    from tensorscope.app.context import AppContext

    make_app(AppContext(run=source), screen="training").run()
    return 0
