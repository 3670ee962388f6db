"""`tensorscope run SCRIPT.py [ARGS...]`: run an unmodified training script and watch it.

The script runs in a child process with tensorscope's instrumentation installed before it
starts (core/runner.py); its output passes through and its exit code is this command's.
Without ``--headless`` the Training screen shows the run live.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys

HELP = "run a training script unmodified and watch it live (or --headless, --record, --json)"
ACCEPTS_EXTRA = True


def configure(parser: argparse.ArgumentParser) -> None:
    # The script's own options pass through: "--rec" must not be taken for our --record.
    parser.allow_abbrev = False
    parser.usage = ("%(prog)s SCRIPT.py [ARGS...] [--headless] [--record FILE] [--json] "
                    "[--nproc N] [--detail {steps,sampled,full}]")
    parser.epilog = ("Arguments after SCRIPT.py go to the script (its --help too), except the "
                     "options above; after a bare -- everything goes to the script.")
    parser.add_argument("script", metavar="SCRIPT.py", help="the training script to run")
    parser.add_argument("--headless", action="store_true", help="no UI: run, record, summarise")
    parser.add_argument("--record", metavar="FILE", help="write every step as JSON Lines to FILE")
    parser.add_argument("--nproc", type=int, metavar="N",
                        help="launch N ranks through torch.distributed's launcher (as torchrun "
                             "--nproc-per-node N does), every rank watched")
    parser.add_argument("--json", action="store_true",
                        help="print a one-line JSON summary (steps, exit_code, findings) last")
    parser.add_argument("--detail", choices=("steps", "sampled", "full"), default="sampled",
                        help="steps: step-level facts only; sampled (default): plus per-module "
                             "statistics as often as 2%% of step time allows (and, on a CPU model "
                             "whose gradient pass is costly, the norm every few steps); full: "
                             "everything every step")


def run(args: argparse.Namespace) -> int:
    from tensorscope.errors import UserError
    from tensorscope.runsource import LiveRun, check_script

    if args.nproc is not None:
        from tensorscope.distributed_run import check_nproc

        check_nproc(args.nproc)  # before the script: the option's own mistake comes first
    try:
        script = check_script(args.script)
    except UserError as exc:
        if not args.json:
            raise
        # --json promises its line last on stdout, a script that never started included.
        sys.stderr.write(f"tensorscope: {exc}\n")
        sys.stdout.write(json.dumps({"steps": 0, "exit_code": exc.exit_code, "findings": [],
                                     "error": str(exc)}) + "\n")
        return exc.exit_code
    # Options after the script belong to the script, except ours (argparse put ours in args).
    script_args = list(args.extra)
    if args.headless or args.json:
        return _headless(script, script_args, args)
    source = _source(script, script_args, args, capture_output=True).start()
    from tensorscope.app.app import make_app
    from tensorscope.app.context import AppContext

    try:
        make_app(AppContext(run=source, own_run=source), screen="training").run()
    finally:
        code = _after_ui(source)
    return code


def _after_ui(source) -> int:
    """The UI closed: stop the script if the user chose so, else let it finish undisturbed."""
    shown = source.snapshot().lines_printed
    # From here Ctrl-C reaches the script too (one process group): it decides what that
    # means; we wait, as --headless does, and pass its output and exit code on.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return _finish_after_ui(source, shown)
    finally:
        signal.signal(signal.SIGINT, previous)


def _finish_after_ui(source, shown: int) -> int:
    stopped = source.running and source.quit_choice == "stop"
    if stopped:
        source.stop()
    elif source.running:
        resume = getattr(source, "resume", None)
        if resume is not None:
            resume()  # left paused, "goes on" would be a lie: it would stay stopped for good
        sys.stderr.write("tensorscope: the UI closed; the script goes on (its output follows)\n")
    relayed_from = shown
    # Keep relaying the script's output until it ends, so its pipes never break.
    while source.wait(0.2) is None:
        shown = _relay(source, shown)
    snap = source.snapshot()
    error = snap.error or {}
    traceback = error.get("traceback")
    if stopped and error.get("exc_type") == "KeyboardInterrupt" and traceback:
        # The user asked for the stop: the KeyboardInterrupt's traceback (torch's frames
        # and all) says nothing they did not choose; one line says where the script was.
        _relay(source, shown, drop_interrupts=True)
        step = error.get("step")
        when = f"after step {step}" if step else "before its first optimizer step"
        sys.stderr.write(f"tensorscope: stopped the script as asked, {when}"
                         f"{_where(traceback, snap.meta.get('script'))}\n")
        source.close()
        return int(source.wait() or 0)
    shown = _relay(source, shown)
    source.close()
    snap = source.snapshot()
    if traceback and not _relayed(traceback, snap.output_since(relayed_from)[0]):
        # The UI showed it; the terminal keeps it too, as `python script.py` would have
        # (unless the script's own stderr, relayed above, already printed it).
        sys.stderr.write(traceback)
    return int(source.wait() or 0)


def _relayed(traceback: str, lines: tuple[str, ...]) -> bool:
    last = traceback.rstrip().splitlines()[-1:] if traceback.strip() else []
    return bool(last) and last[0] in lines


def _where(traceback: str, script: str | None = None) -> str:
    """' (in FILE line N: CODE)' for the innermost frame of a Python traceback that runs
    ``script`` (the innermost of all when none does, or no script is given), or ''."""
    lines = traceback.rstrip("\n").splitlines()
    frames = []
    for i, line in enumerate(lines):
        frame = line.strip()
        if frame.startswith('File "') and ", line " in frame:
            path, rest = frame[len('File "'):].split('", line ', 1)
            code = lines[i + 1].strip() if i + 1 < len(lines) else ""
            if code.startswith('File "'):
                code = ""  # a frame without source (a compiled module, a REPL)
            frames.append((os.path.basename(path), rest.split(",", 1)[0], code))
    if not frames:
        return ""
    own = [f for f in frames if script and f[0] == os.path.basename(script)]
    name, number, code = (own or frames)[-1]
    return f" (in {name} line {number}: {code})" if code else f" (in {name} line {number})"


def _relay(source, shown: int, drop_interrupts: bool = False) -> int:
    """Print the lines after the first ``shown`` the script printed; the new count.
    ``drop_interrupts``: leave out tracebacks that end in KeyboardInterrupt (every rank's)."""
    snap = source.snapshot()
    lines, missed = snap.output_since(shown)
    if drop_interrupts:
        lines = without_interrupt_tracebacks(list(lines))
    if missed:
        sys.stdout.write(f"tensorscope: {missed} lines of the script's output were not kept\n")
    for line in lines:
        sys.stdout.write(line + "\n")
    sys.stdout.flush()
    return snap.lines_printed


_RANK_TAG = re.compile(r"^\[[^\]]{1,40}\]:\s?")
"""A launcher's tag before a rank's line ("[rank1]: ")."""


def without_interrupt_tracebacks(lines: list[str]) -> list[str]:
    """``lines`` less every traceback that ends in KeyboardInterrupt: a stop the user
    asked for, as each rank of a multi-rank run prints it (tagged or not)."""
    bare = [_RANK_TAG.sub("", line, count=1) for line in lines]
    out: list[str] = []
    i = 0
    while i < len(lines):
        if bare[i] == "Traceback (most recent call last):":
            j = i + 1
            while j < len(lines) and bare[j][:1] in (" ", "\t"):
                j += 1  # the frames: indented
            if j < len(lines) and bare[j].startswith("KeyboardInterrupt"):
                i = j + 1
                continue
        out.append(lines[i])
        i += 1
    return out


def _source(script: str, script_args: list[str], args: argparse.Namespace, *,
            capture_output: bool):
    """One child (LiveRun), or with ``--nproc`` a launcher and its ranks (DistributedRun)."""
    if getattr(args, "nproc", None) is not None:
        from tensorscope.distributed_run import DistributedRun

        return DistributedRun(script, script_args, nproc=args.nproc, record=args.record,
                              capture_output=capture_output, detail=args.detail)
    from tensorscope.runsource import LiveRun

    return LiveRun(script, script_args, record=args.record, capture_output=capture_output,
                   detail=args.detail)


def _headless(script: str, script_args: list[str], args: argparse.Namespace) -> int:
    source = _source(script, script_args, args, capture_output=False).start()
    # Ctrl-C goes to the whole process group: the script decides what it means; we wait.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        code = source.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
        source.close()
    code = int(code or 0)
    if args.json:
        snap = source.snapshot()
        findings, doctor = _findings(snap)
        summary = {
            "steps": _per_run(snap.train, lambda r: True),
            "exit_code": code,
            "findings": findings,
            "skipped_steps": _per_run(snap.train, lambda r: bool((r.amp or {}).get("skipped"))),
            "eval_passes": _per_run(snap.records, lambda r: r.phase == "eval"),
            # Optimizers that stepped besides the charted one: their steps are not counted.
            "other_optimizers": (snap.model or {}).get("other_optimizers", []),
            "record": args.record,
            "doctor": doctor,
            **({"error": snap.crash} if snap.crash else {}),  # as for a script that never ran
            **snap.counters,
            **_rank_summary(snap, args),
        }
        sys.stdout.flush()
        sys.stdout.write(json.dumps(summary) + "\n")
        sys.stdout.flush()
    return code


def _per_run(records, counted) -> int:
    """How many records ``counted`` accepts, as the run's own count: with several ranks
    each rank records the same steps, so the count is the most any one rank has (the
    per-rank counts are in steps_per_rank), not their sum."""
    by_rank: dict = {}
    for r in records:
        if counted(r):
            by_rank[r.rank] = by_rank.get(r.rank, 0) + 1
    return max(by_rank.values(), default=0)


def _rank_summary(snap, args: argparse.Namespace) -> dict:
    """With --nproc: ranks seen, steps per rank, failed ranks, stragglers, param sync."""
    if getattr(args, "nproc", None) is None:
        return {}
    from tensorscope.rank_stats import summarize

    summary = summarize(snap.train)
    return {
        "nproc": args.nproc,
        "ranks": summary.ranks,
        "steps_per_rank": {str(r): f.steps for r, f in summary.figures.items()},
        "failures": snap.meta.get("failures", []),
        "stragglers": [s.describe() for s in summary.stragglers],
        "params_in_sync": summary.sync.in_sync,
        "sync_checked_steps": summary.sync.checked_steps,
        "sync_first_divergence": summary.sync.first_divergence,
    }


def _findings(snap) -> tuple[list[dict], str]:
    """The doctor's findings when the doctor is installed, else none (and say so)."""
    try:
        from tensorscope.doctor import diagnose
    except ImportError:
        return [], "unavailable"
    import dataclasses

    errors = ([{"type": snap.error.get("exc_type"), "message": snap.error.get("message", "")}]
              if snap.error else [])
    try:
        found = diagnose(list(snap.records), errors=errors)
    except Exception as exc:  # the doctor's bug must not lose the run's summary
        return [], f"failed: {type(exc).__name__}"
    out = []
    for finding in found:
        out.append(dataclasses.asdict(finding) if dataclasses.is_dataclass(finding) else dict(finding))
    return out, "ran"
