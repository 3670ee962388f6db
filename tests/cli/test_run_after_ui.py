"""What `tensorscope run` does with the script once its UI closes: leave it running (resumed
if it was paused), or stop it, relaying its output and printing a traceback once."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tensorscope.app.commands.run import _after_ui
from tensorscope.runsource import LiveRun

SLOW = """
import sys, time
for i in range(40):
    print("tick", i, flush=True)
    time.sleep(0.02)
print("done", flush=True)
sys.exit(3)
"""

SLEEPY = """
import time
print("started", flush=True)
time.sleep(60)
"""


def _started(tmp_path: Path, code: str, text: str) -> LiveRun:
    """``code`` running under LiveRun (output captured), once it has printed ``text``."""
    script = tmp_path / "script.py"
    script.write_text(code)
    source = LiveRun(str(script), [], capture_output=True).start()
    end = time.monotonic() + 30
    while not any(text in line for line in source.snapshot().output):
        assert time.monotonic() < end, "the script never printed " + text
        time.sleep(0.05)
    return source


@pytest.mark.slow
def test_a_paused_script_left_running_is_resumed(tmp_path: Path, capsys) -> None:
    source = _started(tmp_path, SLOW, "tick 0")
    assert source.pause()
    # Were it never resumed, _after_ui would wait forever: free it after 20 s so that the
    # test fails on the time taken instead of hanging.
    rescue = threading.Timer(20, lambda: os.kill(source.proc.pid, signal.SIGCONT))
    rescue.start()
    start = time.monotonic()
    try:
        code = _after_ui(source)  # quit_choice None: the user chose to leave it running
    finally:
        rescue.cancel()
    assert code == 3 and time.monotonic() - start < 15
    captured = capsys.readouterr()
    assert "the script goes on" in captured.err and "done" in captured.out


@pytest.mark.slow
def test_stopping_says_where_the_script_was_in_one_line(tmp_path: Path, capsys) -> None:
    # The user chose "stop" in the quit dialog: the KeyboardInterrupt's traceback, printed
    # after the UI closed, was noise they had asked for. One line says where it stopped;
    # what the script printed before is still relayed.
    source = _started(tmp_path, SLEEPY, "started")
    source.quit_choice = "stop"
    code = _after_ui(source)
    captured = capsys.readouterr()
    assert code == 130
    both = captured.out + captured.err
    assert "Traceback" not in both, both
    assert ("tensorscope: stopped the script as asked, before its first optimizer step "
            "(in script.py line 4: time.sleep(60))") in captured.err
    assert both.count("KeyboardInterrupt") == 0


def test_where_names_the_innermost_frame() -> None:
    from tensorscope.app.commands.run import _where

    text = ('Traceback (most recent call last):\n'
            '  File "/home/u/train.py", line 12, in <module>\n'
            '    loss.backward()\n'
            '  File "/x/torch/_tensor.py", line 581, in backward\n'
            '    torch.autograd.backward(\n'
            'KeyboardInterrupt\n')
    assert _where(text, "train.py") == " (in train.py line 12: loss.backward())"
    assert _where(text, "other.py") == " (in _tensor.py line 581: torch.autograd.backward()"
    assert _where(text) == " (in _tensor.py line 581: torch.autograd.backward()"
    assert _where("KeyboardInterrupt\n", "train.py") == ""


def test_output_past_the_kept_window_is_still_relayed(capsys) -> None:
    # The run keeps its last MAX_OUTPUT_LINES lines; a count into that window stops moving
    # once it is full, so lines are counted over the whole run.
    from tensorscope.app.commands.run import _relay
    from tensorscope.runsource import RunSnapshot

    class Source:
        def __init__(self, total: int, window: int) -> None:
            self.snap = RunSnapshot(source="live", label="x", records=(), state="running",
                                    output=tuple(f"line {i}" for i in range(total - window, total)),
                                    output_total=total)

        def snapshot(self) -> RunSnapshot:
            return self.snap

    assert _relay(Source(5003, 5000), 5000) == 5003
    assert capsys.readouterr().out.split("\n")[:3] == ["line 5000", "line 5001", "line 5002"]
    assert _relay(Source(9000, 5000), 3000) == 9000  # 6000 new, 5000 kept
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "tensorscope: 1000 lines of the script's output were not kept"
    assert out[1] == "line 4000" and len(out) == 5001


def test_a_stop_asked_for_drops_every_ranks_interrupt_traceback_and_nothing_else() -> None:
    # Under --nproc the quit dialog's stop left one rank's KeyboardInterrupt traceback out
    # and printed the others'.
    from tensorscope.app.commands.run import without_interrupt_tracebacks

    def block(tag: str, last: str) -> list[str]:
        return [f"{tag}Traceback (most recent call last):", f'{tag}  File "train.py", line 9, in <module>',
                f"{tag}    loss.backward()", f"{tag}{last}"]

    lines = ["epoch 1 loss 0.5", *block("[rank0]: ", "KeyboardInterrupt"),
             *block("[rank1]:", "KeyboardInterrupt"), *block("", "KeyboardInterrupt"),
             *block("", "ValueError: bad batch"), "done"]
    assert without_interrupt_tracebacks(lines) == ["epoch 1 loss 0.5", *block("", "ValueError: bad batch"),
                                                   "done"]
