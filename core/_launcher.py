"""The launcher process of ``tensorscope run --nproc N``: ``python -m tensorscope._launcher N SCRIPT ARGS``.

It plays the part of ``torchrun``: :func:`tensorscope.distributed.launch` starts N ranks
through PyTorch's elastic launcher, each rank running ``python -m tensorscope._bootstrap
SCRIPT ARGS`` (the same instrumented child as a one-process run), all streaming to the UI
named in the environment. Running it as its own process (not a thread of the UI) lets the
launcher own its signal handlers, as torchrun does: SIGINT/SIGTERM here stop every rank.

When it ends it sends one ``launch_end`` event (exit code, failed ranks) and prints one line
per failed rank on stderr; its exit code is the launcher's.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from tensorscope.distributed import launch
    from tensorscope.transport import sender_from_env

    nproc, script, args = int(argv[0]), argv[1], argv[2:]
    result = launch(nproc, ["-m", "tensorscope._bootstrap", script, *args])
    for failure in result.failures:
        sys.stderr.write(f"tensorscope: {failure.describe()}\n")
    sender = sender_from_env()
    if sender is not None:
        sender.send({"type": "launch_end", "exit_code": result.exit_code, "nproc": nproc,
                     "failures": [f.to_json() for f in result.failures]})
        sender.close(timeout=5.0)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
