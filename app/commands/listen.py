"""`tensorscope listen`: wait for runs started elsewhere (e.g. by torchrun) to connect.

Prints the two environment variables to give the training processes and the command that
runs a script instrumented under torchrun, then shows the run in the Training screen (or,
with ``--headless``, records it and exits with the worst exit code the processes reported).
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys

HELP = "wait for a run started elsewhere (torchrun -m tensorscope._bootstrap ...) to connect"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--headless", action="store_true", help="no UI: record until the run ends")
    parser.add_argument("--record", metavar="FILE", help="write every step as JSON Lines to FILE")


def instructions(env: dict[str, str]) -> str:
    """What to paste in the shell that starts the training."""
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    return (
        "tensorscope: listening. In the shell that starts the training:\n"
        f"  export {exports}\n"
        "  torchrun --nproc-per-node N -m tensorscope._bootstrap train.py [ARGS...]\n"
    )


def run(args: argparse.Namespace) -> int:
    from tensorscope.listen_run import ListenRun

    source = ListenRun(record=args.record).start()
    sys.stderr.write(instructions(source.server.env()))
    sys.stderr.flush()
    if args.headless:
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            code = source.wait()
        except KeyboardInterrupt:
            sys.stderr.write("tensorscope: stopped listening\n")
            code = 130
        finally:
            signal.signal(signal.SIGINT, previous)
            source.close()
        return int(code or 0)
    from tensorscope.app.app import make_app
    from tensorscope.app.context import AppContext

    try:
        make_app(AppContext(run=source), screen="training").run()
    finally:
        source.close()
    # The UI closed: the training goes on; its processes simply stop streaming here.
    return 0
