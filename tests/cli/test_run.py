"""`tensorscope run --headless --record` on unmodified scripts, and `replay` of what it wrote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tensorscope.telemetry import read_jsonl

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
pytestmark = pytest.mark.slow


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tensorscope", *args], capture_output=True,
                          text=True, timeout=180, cwd=cwd)


def printed(stdout: str, word: str) -> list[float]:
    return [float(line.split()[-1]) for line in stdout.splitlines()
            if line.startswith(word) and "loss" in line]


def test_minimal_script_every_step_recorded_with_its_own_losses(tmp_path: Path) -> None:
    record = tmp_path / "run.jsonl"
    out = run_cli("run", str(FIXTURES / "minimal_train.py"), "--epochs", "2", "--headless",
                  "--record", str(record), "--json")
    assert out.returncode == 0, out.stderr
    own = printed(out.stdout, "step")
    records, meta, dropped = read_jsonl(record)
    train = [r for r in records if r.phase == "train"]
    assert len(own) == 26 and [r.step for r in train] == list(range(1, 27))
    assert [r.loss for r in train] == own
    assert dropped == 0 and meta["exit_code"] == 0 and meta["model"]["optimizer"] == "AdamW"
    assert all(r.lr == [1e-3] and r.grad_norm > 0 and r.rank is None for r in train)
    # The script trains on CUDA where there is one (tests/gpu checks that side's counters).
    kind = "cuda" if torch.cuda.is_available() else "cpu-rss"
    assert train[0].memory["kind"] == kind  # read at most 10 times a second
    assert all(r.memory is None or r.memory["kind"] == kind for r in train)
    assert [r.epoch for r in train][::13] == [0, 1]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 26 and summary["exit_code"] == 0
    assert isinstance(summary["findings"], list)


def test_eval_records_and_exit_code_pass_through(tmp_path: Path) -> None:
    record = tmp_path / "eval.jsonl"
    out = run_cli("run", str(FIXTURES / "eval_train.py"), "--epochs", "2", "--exit", "3",
                  "--headless", "--record", str(record))
    assert out.returncode == 3
    records, meta, _ = read_jsonl(record)
    assert meta["exit_code"] == 3
    assert [r.loss for r in records if r.phase == "train"] == printed(out.stdout, "train")
    evals = [r for r in records if r.phase == "eval"]
    assert [r.loss for r in evals] == pytest.approx(printed(out.stdout, "val"))
    assert [r.step for r in evals] == [4, 8]
    lrs = [r.lr[0] for r in records if r.phase == "train"]
    assert lrs[0] == pytest.approx(0.01) and lrs[-1] == pytest.approx(0.005)  # StepLR halved it


def test_crash_keeps_the_steps_before_it_and_prints_the_traceback(tmp_path: Path) -> None:
    record = tmp_path / "crash.jsonl"
    out = run_cli("run", str(FIXTURES / "crash_train.py"), "--headless", "--record", str(record),
                  "--json")
    assert out.returncode == 1
    assert "Traceback" in out.stderr and "RuntimeError" in out.stderr
    assert "_bootstrap" not in out.stderr and "runpy" not in out.stderr
    records, meta, _ = read_jsonl(record)
    assert [r.loss for r in records] == printed(out.stdout, "step") and len(records) == 5
    assert meta["error"]["exc_type"] == "RuntimeError" and meta["exit_code"] == 1
    # --json names the crash, as it names a script that does not compile.
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["exit_code"] == 1 and summary["error"].startswith("RuntimeError")


def test_amp_inf_skips_a_step_halves_the_scale_and_it_grows_back(tmp_path: Path) -> None:
    record = tmp_path / "amp.jsonl"
    out = run_cli("run", str(FIXTURES / "amp_train.py"), "--headless", "--record", str(record),
                  "--json")
    assert out.returncode == 0, out.stderr
    records, _, _ = read_jsonl(record)
    assert len(records) == 12
    amp = [r.amp for r in records]
    assert [a["skipped"] for a in amp].index(True) == 3 and sum(a["skipped"] for a in amp) == 1
    assert all(a["autocast_dtype"] == "bfloat16" for a in amp)
    scales = [a["scale"] for a in amp]
    # Scale after each update, as the script printed it ("... -> after").
    assert scales == [float(line.split()[-1]) for line in out.stdout.splitlines()
                      if line.startswith("iter")]
    assert scales[3] == scales[2] / 2 and max(scales[4:]) > scales[2]
    assert json.loads(out.stdout.strip().splitlines()[-1])["skipped_steps"] == 1


@pytest.mark.parametrize("content,needle,code", [
    (None, "no such script", 2),  # as `python` exits for a missing script...
    ("x = 1\ndef broken(:\n", "syntax error in", 1),  # ...and for one that does not compile
])
@pytest.mark.parametrize("json_flag", [False, True])
def test_bad_scripts_are_one_line_with_pythons_exit_code(tmp_path: Path, content, needle, code,
                                                         json_flag) -> None:
    script = tmp_path / "train.py"
    if content is not None:
        script.write_text(content)
    out = run_cli("run", str(script), "--headless", *(["--json"] if json_flag else []))
    assert out.returncode == code
    assert len(out.stderr.strip().splitlines()) == 1 and needle in out.stderr
    assert "Traceback" not in out.stderr
    if content is not None:
        assert "line 2" in out.stderr and "def broken(:" in out.stderr
    if json_flag:  # --json's line comes last on stdout even when the script never started
        summary = json.loads(out.stdout.strip().splitlines()[-1])
        assert (summary["steps"], summary["exit_code"]) == (0, code) and needle in summary["error"]
    else:
        assert out.stdout == ""


def test_a_bad_nproc_is_named_before_the_script_is_looked_for(tmp_path: Path) -> None:
    # Walk-through: `run --nproc 0 typo.py` said "no such script"; fixing the name then
    # met the --nproc error. The option's own mistake comes first.
    out = run_cli("run", "--nproc", "0", str(tmp_path / "typo.py"), "--headless")
    assert out.returncode == 2
    assert out.stderr.strip() == "tensorscope: --nproc must be between 1 and 64 (got 0)"


def test_replay_of_a_missing_file_is_one_line_exit_2(tmp_path: Path) -> None:
    out = run_cli("replay", str(tmp_path / "none.jsonl"))
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1


def test_replay_of_records_with_values_of_the_wrong_kind_is_one_line_exit_2(tmp_path: Path) -> None:
    # Found in a walk-through: a hand-edited record crashed the Training screen's chart
    # with a traceback, and the exit code was 0.
    path = tmp_path / "edited.jsonl"
    path.write_text('{"type": "step", "step": "x", "loss": "abc"}\n'
                    '{"type": "step", "step": 1, "loss": 1.0, "lr": "x"}\n')
    out = run_cli("replay", str(path))
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr and "2 lines could not be read" in out.stderr


def _train_records(tmp_path: Path, *args: str) -> list:
    record = tmp_path / "d.jsonl"
    out = run_cli("run", str(FIXTURES / "minimal_train.py"), "--quiet", "--headless",
                  *args, "--record", str(record))
    assert out.returncode == 0, out.stderr
    return [r for r in read_jsonl(record)[0] if r.phase == "train"]


def test_sampled_detail_follows_the_watch_budget_schedule(tmp_path: Path) -> None:
    train = _train_records(tmp_path, "--detail", "sampled")
    detail = [r for r in train if r.signals.get("detail")]
    # watch attaches inside step 1 (no forward seen: no module statistics), so its first
    # full detail step is step 2, not a whole period later.
    assert [r.step for r in detail[:2]] == [1, 2] and detail[1].modules
    for a, b in zip(detail, detail[1:]):
        assert b.step - a.step == a.signals["detail_every"]  # the gap the schedule announced
    assert all(bool(r.modules) == bool(r.signals.get("detail")) for r in train[1:])
    assert all(r.loss is not None and r.grad_norm is not None for r in train[1:])


def test_full_detail_has_module_statistics_on_every_step(tmp_path: Path) -> None:
    train = _train_records(tmp_path, "--detail", "full")
    assert all(r.modules for r in train[1:]) and len(train) > 5


def test_functional_loss_is_read_from_the_scripts_loss_variable(tmp_path: Path) -> None:
    record = tmp_path / "f.jsonl"
    out = run_cli("run", str(FIXTURES / "functional_train.py"), "--headless", "--record",
                  str(record))
    assert out.returncode == 0, out.stderr
    records = read_jsonl(record)[0]
    assert [r.loss for r in records] == printed(out.stdout, "step") and len(records) == 8
    assert records[-1].signals["loss_source"] == "the script's `loss` variable"


def test_a_script_that_watches_itself_is_not_watched_twice(tmp_path: Path) -> None:
    """`run` adopts the script's own watch() session: its module choice streams, once."""
    record = tmp_path / "self.jsonl"
    out = run_cli("run", str(FIXTURES / "self_watched_train.py"), "--headless",
                  "--record", str(record), "--detail", "full")
    assert out.returncode == 0, out.stderr
    assert "own records 5" in out.stdout
    records, meta, _ = read_jsonl(record)
    train = [r for r in records if r.phase == "train"]
    assert [r.step for r in train] == [1, 2, 3, 4, 5]
    assert meta["end"]["watch"] == "the script's own watch()"
    # --detail full would hook every module; the script's own choice (two layers) won.
    assert all(set(r.modules) == {"0", "4"} for r in train)


def test_help_and_arguments_after_the_script_are_the_scripts(tmp_path: Path) -> None:
    script = tmp_path / "echo.py"
    script.write_text("import sys\nprint('ARGS', sys.argv[1:])\n")
    out = run_cli("run", "--headless", str(script), "--help")
    assert out.returncode == 0 and "ARGS ['--help']" in out.stdout, out.stderr
    # run's own options may follow the script; after a bare -- everything is the script's.
    out = run_cli("run", "--record", str(tmp_path / "r.jsonl"), str(script), "-h", "--lr", "3",
                  "--headless", "--", "--json")
    assert out.returncode == 0 and "ARGS ['-h', '--lr', '3', '--json']" in out.stdout, out.stderr
    assert (tmp_path / "r.jsonl").exists() and not out.stdout.strip().startswith("{")
    out = run_cli("run", "--headless", str(script), "--", "--a", "--", "--b")
    assert "ARGS ['--a', '--', '--b']" in out.stdout  # the script's own -- is kept
    usage = run_cli("run", "--help")
    assert usage.returncode == 0 and "SCRIPT.py [ARGS...]" in usage.stdout


SLOW_STEPS = """
import time
import torch
from torch import nn

model = nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
for step in range(40):
    x = torch.randn(8, 4)
    time.sleep(0.02)  # waiting for data
    out = model(x)
    time.sleep(0.03)  # computing
    loss = out.pow(2).mean()
    loss.backward()
    opt.step()
    opt.zero_grad()
"""


def test_paused_time_is_left_out_of_the_step_it_fell_in(tmp_path: Path) -> None:
    # Found in a walk-through: a 5 s pause made one step last 5 s in --record, with
    # samples/s, the step-time chart and the ETA following it.
    import time

    from tensorscope.runsource import LiveRun

    script = tmp_path / "train.py"
    script.write_text(SLOW_STEPS)
    record = tmp_path / "run.jsonl"
    source = LiveRun(str(script), [], record=str(record), capture_output=False).start()
    try:
        deadline = time.monotonic() + 60
        while len(source.snapshot().train) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert source.pause()
        time.sleep(1.0)
        assert source.resume()
        assert source.wait(120) == 0
    finally:
        source.close()
    train = [r for r in read_jsonl(record)[0] if r.phase == "train"]
    assert len(train) == 40
    # (> 0.5: SIGSTOP may land a few µs after the parent's clock reading, which gives the
    # step before a sliver of the pause: review.)
    paused = [r for r in train if (r.signals.get("paused_s") or 0) > 0.5]
    assert len(paused) == 1 and 0.9 < paused[0].signals["paused_s"] < 1.5
    # Each step is its ~50 ms of sleeps again (generous: a loaded machine), and its
    # throughput is the batch over that time.
    assert max(r.step_time_s for r in train[1:]) < 0.5
    r = paused[0]
    assert r.samples_per_s == pytest.approx(8 / r.step_time_s)
    assert r.data_time_s + r.compute_time_s == pytest.approx(r.step_time_s, abs=1e-3)


def test_the_only_dataloader_gives_the_run_length_even_unshuffled(tmp_path: Path) -> None:
    # Walk-through: a script whose one DataLoader does not shuffle was told "no DataLoader
    # with a length in the script" for its whole run (only shuffling ones were looked at,
    # an unshuffled one being maybe the validation set).
    models = _model_events(
        tmp_path,
        "data = torch.utils.data.TensorDataset(torch.randn(64, 4), torch.randn(64, 1))\n"
        "loader = torch.utils.data.DataLoader(data, batch_size=16)\n"
        "model = nn.Linear(4, 1); opt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "epochs = 2\nfor epoch in range(epochs):\n"
        "    for x, y in loader:\n"
        "        opt.zero_grad(); nn.functional.mse_loss(model(x), y).backward(); opt.step()\n")
    assert models[0]["batches_per_epoch"] == 4 and models[0]["epochs"] == 2


def _model_events(tmp_path: Path, body: str) -> list[dict]:
    """The model events of a script (torch and nn imported, then ``body``) run headless."""
    script = tmp_path / "train.py"
    script.write_text("import torch\nfrom torch import nn\n" + body)
    record = tmp_path / "r.jsonl"
    out = run_cli("run", str(script), "--headless", "--record", str(record))
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in record.read_text().splitlines()
            if json.loads(line)["type"] == "model"]


def test_a_gans_models_and_optimizers_are_named_as_the_script_names_them(tmp_path: Path) -> None:
    # Walk-through: "Sequential (65 params) · Adam (also steps: Adam, not charted)" did not
    # say which network was charted.
    models = _model_events(
        tmp_path,
        "class Trainer:\n"
        "    def __init__(self):\n"
        "        self.netD, self.netG = nn.Linear(2, 1), nn.Linear(4, 2)\n"
        "        self.optD = torch.optim.Adam(self.netD.parameters())\n"
        "        self.optG = torch.optim.Adam(self.netG.parameters())\n"
        "    def step(self):\n"
        "        self.optD.zero_grad(); self.netD(torch.randn(8, 2)).mean().backward(); self.optD.step()\n"
        "        self.optG.zero_grad(); self.netD(self.netG(torch.randn(8, 4))).mean().backward()\n"
        "        self.optG.step()\n"
        "trainer = Trainer()\n"
        "for _ in range(3):\n"
        "    trainer.step()\n")
    assert (models[-1]["model_name"], models[-1]["optimizer_name"]) == ("self.netD", "self.optD")
    assert models[-1]["other_optimizer_names"] == ["self.optG"]
