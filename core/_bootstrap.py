"""The child process of ``tensorscope run``: ``python -m tensorscope._bootstrap SCRIPT ARGS...``.

It installs the instrumentation (core/runner.py), then runs SCRIPT exactly as
``python SCRIPT ARGS...`` would: ``__name__ == "__main__"``, ``sys.argv`` set, the script's
folder first on ``sys.path``. Events go to the UI through the channel named in the
environment (core/transport.py). The script's exit code is this process's exit code; a
crash's traceback is printed as Python prints it and sent as an ``error`` event.
"""

from __future__ import annotations

import os
import runpy
import sys


def main(argv: list[str]) -> int:
    from tensorscope.runner import Instrumentation, format_script_traceback
    from tensorscope.transport import sender_from_env

    script, args = argv[0], argv[1:]
    sender = sender_from_env()
    emit = sender.send if sender is not None else (lambda event: None)
    script_path = os.path.abspath(script)
    sys.argv = [script, *args]
    sys.path[0] = os.path.dirname(script_path)
    emit({"type": "run", "script": script, "argv": args, "pid": os.getpid(),
          "python": sys.version.split()[0]})
    instr = Instrumentation(script_path, emit)
    instr.install()
    code = 0
    try:
        runpy.run_path(script_path, run_name="__main__")
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except BaseException as exc:  # the script crashed: report it the way Python would
        text = format_script_traceback(exc, script_path)
        emit({"type": "error", "exc_type": type(exc).__name__, "message": str(exc),
              "traceback": text, "step": instr.step})
        sys.stderr.write(text)
        sys.stderr.flush()
        code = 130 if isinstance(exc, KeyboardInterrupt) else 1
    finally:
        instr.finish()
    dropped = sender.dropped if sender is not None else 0
    emit({"type": "end", "exit_code": code, "steps": instr.step, "hook_errors": instr.hook_errors,
          "watch": instr.watch_status, "dropped_events": dropped})
    if sender is not None:
        sender.close(timeout=5.0)
    return code


def _exit_code(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    sys.stderr.write(f"{value}\n")  # sys.exit("message") prints it and exits 1
    return 1


if __name__ == "__main__":
    sys.stdout.flush()
    status = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(status)
