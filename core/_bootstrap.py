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

ENV_DETAIL = "TENSORSCOPE_DETAIL"
"""How much the child measures: "steps", "sampled" (default) or "full" (core/runner.py)."""


def main(argv: list[str]) -> int:
    from tensorscope.runner import Instrumentation, format_script_traceback
    from tensorscope.transport import sender_from_env

    script, args = argv[0], argv[1:]
    sender = sender_from_env()
    emit = sender.send if sender is not None else (lambda event: None)
    script_path = os.path.abspath(script)
    sys.argv = [script, *args]
    sys.path[0] = os.path.dirname(script_path)
    rank = _env_rank()
    emit({"type": "run", "script": script, "argv": args, "pid": os.getpid(),
          "python": sys.version.split()[0], "rank": rank})
    instr = Instrumentation(script_path, emit, detail=os.environ.get(ENV_DETAIL, "sampled"),
                            emit_later=sender.send_later if sender is not None else None)
    instr.install()
    code = 0
    try:
        runpy.run_path(script_path, run_name="__main__")
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except BaseException as exc:  # the script crashed: report it the way Python would
        text = format_script_traceback(exc, script_path)
        instr.flush_records()  # the steps before the crash go out before its error
        emit({"type": "error", "exc_type": type(exc).__name__, "message": str(exc),
              "traceback": text, "step": instr.step, "rank": rank})
        _record_for_launcher(exc)
        sys.stderr.write(text)
        sys.stderr.flush()
        code = 130 if isinstance(exc, KeyboardInterrupt) else 1
    finally:
        instr.finish()
    dropped = sender.dropped if sender is not None else 0
    emit({"type": "end", "exit_code": code, "steps": instr.step, "hook_errors": instr.hook_errors,
          "watch": instr.watch_status, "dropped_events": dropped, "rank": rank})
    if sender is not None:
        sender.close(timeout=5.0)
    return code


def _env_rank() -> int | None:
    """The rank torchrun / elastic_launch gave this process (None outside a launcher)."""
    from tensorscope.distributed import rank_from_env

    info = rank_from_env()
    return info.rank if info is not None else None


def _record_for_launcher(exc: BaseException) -> None:
    """Under a torch.distributed launcher, write the crash to the rank's error file.

    The launcher then names this rank's own error (not just its exit code) and orders the
    failures by when they happened, so the rank that crashed first is the root cause.
    """
    if not os.environ.get("TORCHELASTIC_ERROR_FILE"):
        return
    try:
        from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

        ErrorHandler().record_exception(exc)
    except Exception:  # the launcher then reports the exit code alone
        pass


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
