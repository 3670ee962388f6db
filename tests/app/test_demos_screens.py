"""The Demos and Doctor screens, driven with Pilot; every scenario opens in the TUI."""

from __future__ import annotations

import time

import pytest
from textual.widgets import Button, OptionList, Static

from tensorscope.app.app import make_app
from tensorscope.app.commands.demo import landing_screen
from tensorscope.app.context import AppContext
from tensorscope.app.screens import doctor as doctor_screen
from tensorscope.app.screens.demos import open_scenario_screen
from tensorscope.demos import NAMES, catalogue, get


@pytest.mark.parametrize("name", NAMES)
async def test_each_demo_opens_on_its_landing_screen(name: str) -> None:
    scenario = get(name)
    screen = landing_screen(scenario)
    app = make_app(AppContext(**scenario.context_fields()), screen=screen)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.current_mode == screen


async def test_demos_screen_shows_lesson_code_and_runs() -> None:
    app = make_app(AppContext(demo=get("memory-sharing")), screen="demos")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert "Views share memory" in str(screen.query_one("#demos-title", Static).content)
        assert len(screen.query(".code-panel")) == 2          # bug and fix side by side
        await pilot.press("r")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert screen._results["memory-sharing"]["facts"]["a_after_write"][0] == 99.0
        assert "Press r" not in str(screen.query_one("#demos-results", Static).content)


async def _until_the_doctor_lists(app, pilot) -> None:
    """The Doctor screen mounts after the mode switch and only then starts its worker, so
    one wait_for_complete() can return before that worker exists: settle a few rounds."""
    for _ in range(20):
        await pilot.pause()
        await app.workers.wait_for_complete()
        if app.current_mode == "doctor" and app.screen.query("#doctor-list"):
            if app.screen.query_one("#doctor-list", OptionList).option_count:
                return


# The key: found in a walk-through, where r showed "doctor: 1 finding" and then d said
# "Nothing is attached yet" (only the Open Doctor button loaded the demo).
@pytest.mark.parametrize("way", ["button", "key d"])
async def test_demos_screen_opens_the_doctor_with_the_selected_demo_loaded(way: str) -> None:
    app = make_app(screen="demos")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        app.screen.query_one("#demos-list", OptionList).highlighted = 0   # missing-zero-grad
        await pilot.pause()
        if way == "button":
            doctor = [b for b in app.screen.query(".open-screen").results(Button)
                      if b.name == "doctor"]
            assert doctor
            doctor[0].press()
        else:
            await pilot.press("d")
        await _until_the_doctor_lists(app, pilot)
        assert app.current_mode == "doctor"
        assert app.context.demo.name == "missing-zero-grad"
        assert app.screen.query_one("#doctor-list", OptionList).option_count >= 1


async def test_d_on_a_demo_without_a_doctor_view_says_so_and_stays() -> None:
    # Found in a walk-through: d on such a demo opened the Doctor on the demo loaded
    # before it, whose findings then read as this one's.
    app = make_app(screen="demos")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        names = [s.name for s in catalogue()]
        lesson = next(s for s in catalogue() if "doctor" not in s.screens)
        listing = app.screen.query_one("#demos-list", OptionList)
        listing.highlighted = 0  # missing-zero-grad: has a doctor view, loaded first
        await pilot.press("d")
        await _until_the_doctor_lists(app, pilot)
        app.open_screen("demos")
        await pilot.pause()
        listing = app.screen.query_one("#demos-list", OptionList)
        listing.highlighted = names.index(lesson.name)
        await pilot.pause()
        await pilot.press("d")
        await pilot.pause()
        assert app.current_mode == "demos"
        shown = [n.message for n in app._notifications]
        assert any(lesson.name in m and "no doctor view" in m for m in shown)


async def test_doctor_with_nothing_attached_says_how() -> None:
    app = make_app(screen="doctor")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        text = str(app.screen.query_one("#doctor-empty", Static).content)
        assert "tensorscope run" in text and "tensorscope demo" in text


async def test_the_doctors_help_fits_an_80_column_terminal() -> None:
    app = make_app(screen="doctor")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        box = app.screen.query_one("#doctor-empty", Static)
        assert box.region.x + box.region.width <= 80
        text = str(box.content)
        # The command lines fit the box's inside (70 columns there): no wrapped commands.
        inside = box.content_region.width
        assert all(len(line) <= inside for line in text.splitlines() if line.startswith("  "))


async def test_doctor_on_a_healthy_demo_says_nothing_wrong() -> None:
    app = make_app(AppContext(**get("memory-sharing").context_fields()), screen="doctor")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "no findings" in str(app.screen.query_one("#doctor-source", Static).content)


async def test_doctor_runs_one_diagnosis_at_a_time_however_long_it_takes(monkeypatch) -> None:
    # A live run is polled every POLL_S. A diagnosis slower than that (a slow machine, a
    # long run) must not be started again at each poll: the worker is exclusive, so each
    # restart cancelled the last one (wait_for_complete then raised) and redid its work.
    monkeypatch.setattr(doctor_screen, "POLL_S", 0.01)
    fields = get("missing-zero-grad").context_fields()
    observation = fields["run"].observation
    quick = observation.findings
    calls = []

    def slow():
        calls.append(time.monotonic())
        time.sleep(0.1)  # ten polls
        return quick()

    monkeypatch.setattr(observation, "findings", slow)
    app = make_app(AppContext(**fields), screen="doctor")
    async with app.run_test(size=(160, 48)) as pilot:
        for _ in range(3):
            await pilot.pause(0.05)
            await app.workers.wait_for_complete()  # raised WorkerCancelled before the fix
        await pilot.pause(0.1)
        assert len(calls) == 1
        assert app.screen.query_one("#doctor-list", OptionList).option_count >= 1
        assert "finding" in str(app.screen.query_one("#doctor-source", Static).content)


async def test_a_demo_loaded_after_another_is_what_every_screen_shows() -> None:
    # Found in a walk-through: after missing-zero-grad, the Doctor of inplace-autograd
    # (a demo with no run of its own) showed missing-zero-grad's finding as its own, and
    # the Training screen built for one demo kept showing it after amp-scaler was loaded.
    app = make_app(screen="demos")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        names = [s.name for s in catalogue()]

        async def load(name: str, key: str = "d") -> None:
            app.open_screen("demos")
            await pilot.pause()
            app.screen.query_one("#demos-list", OptionList).highlighted = names.index(name)
            await pilot.pause()
            await pilot.press(key)
            await _until_the_doctor_lists(app, pilot)

        await load("missing-zero-grad")
        app.open_screen("training")
        await pilot.pause()
        assert "missing-zero-grad" in str(app.screen.query_one("#tr-status").content)
        await load("inplace-autograd")
        source = str(app.screen.query_one("#doctor-source", Static).content)
        assert "inplace-autograd" in source and "missing-zero-grad" not in source
        assert app.context.run is None
        await load("amp-scaler")
        app.open_screen("training")
        for _ in range(10):
            await pilot.pause()
        status = str(app.screen.query_one("#tr-status").content)
        assert "amp-scaler" in status and "missing-zero-grad" not in status


async def test_a_demo_keeps_what_the_user_opened_the_app_on(tmp_path) -> None:
    # Review: clearing every subject on a demo load threw away checkpoints given on the
    # command line. A demo clears only what the demo before it set.
    import torch

    path = tmp_path / "mine.pt"
    torch.save({"w": torch.zeros(2)}, path)
    app = make_app(AppContext(checkpoints=[str(path)]), screen="demos")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        open_scenario_screen(app, get("inplace-autograd"), "graph")
        await pilot.pause()
        assert app.context.checkpoints == [str(path)]
        open_scenario_screen(app, get("checkpoint-resume"), "inspect")  # a demo's own files
        await pilot.pause()
        theirs = list(app.context.checkpoints)
        assert theirs and str(path) not in theirs
        app.open_screen("demos")
        await pilot.pause()
        open_scenario_screen(app, get("memory-sharing"), "storage")
        await pilot.pause()
        assert app.context.checkpoints == []  # the demo's files went with it
        assert app.context.run is None


async def test_quitting_still_asks_about_the_users_script_after_a_demo_s_run(tmp_path) -> None:
    # Review: a training demo's run took the place of the script under tensorscope run,
    # and ctrl+q then quit without asking whether to stop that script.
    from tensorscope.app.screens.training import QuitRunScreen

    class Running:
        running = True
        quit_choice = None

        def snapshot(self):  # never drawn here: the demo's run is on screen
            raise AssertionError

    mine = Running()
    app = make_app(AppContext(own_run=mine), screen="demos")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        open_scenario_screen(app, get("amp-scaler"), "doctor")
        await pilot.pause()
        assert app.context.run is not mine and app.context.own_run is mine
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert isinstance(app.screen, QuitRunScreen)


async def _run_with_r(app, pilot, name: str) -> None:
    """Select the demo ``name`` on the Demos screen and press r; wait for its run."""
    await pilot.pause()
    names = [s.name for s in catalogue()]
    listing = app.screen.query_one("#demos-list", OptionList)
    listing.highlighted = names.index(name)
    listing.focus()
    await pilot.pause()
    await pilot.press("r")
    await app.workers.wait_for_complete()
    await pilot.pause()


async def test_r_makes_the_demo_what_the_screen_keys_open() -> None:
    # Walk-through: after r on amp-scaler, t opened the demo loaded before it (or nothing).
    app = make_app(screen="demos")
    async with app.run_test(size=(160, 48)) as pilot:
        await _run_with_r(app, pilot, "amp-scaler")
        await pilot.press("t")
        for _ in range(5):
            await pilot.pause()
        assert app.current_mode == "training"
        assert "demo:amp-scaler" in str(app.screen.query_one("#tr-status").content)


async def test_the_doctor_never_calls_a_crashed_run_fine() -> None:
    # Walk-through: replaying a crashed run, the Doctor said "no findings: nothing looks
    # wrong" while the Training screen said "exit code 1 RuntimeError".
    from pathlib import Path

    from tensorscope.runsource import ReplayRun

    records = Path(__file__).resolve().parent.parent / "fixtures" / "records"
    app = make_app(AppContext(run=ReplayRun(str(records / "crash_run.jsonl"))), screen="doctor")
    async with app.run_test(size=(160, 48)) as pilot:
        source = await _verdict(app, pilot, "crash")
        assert "nothing looks wrong" not in source
        assert "the run crashed: RuntimeError: mat1 and mat2 shapes" in source
        jump = app.screen.query_one("#doctor-jump", Button)
        assert jump.display and "Training" in str(jump.label)


async def test_a_crashed_run_with_findings_still_names_its_crash(tmp_path) -> None:
    # Walk-through: a script that crashed at step 30 got "1 finding" (an unrelated
    # .item() note) and not a word of the RuntimeError that stopped it.
    import json
    from pathlib import Path

    from tensorscope.runsource import ReplayRun

    records = Path(__file__).resolve().parent.parent / "fixtures" / "records"
    lines = (records / "crash_run.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    for event in events:
        if event.get("type") == "step":  # a non-finite loss: a finding of its own
            event["loss"] = float("nan")
    path = tmp_path / "crash_nan.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    app = make_app(AppContext(run=ReplayRun(str(path))), screen="doctor")
    async with app.run_test(size=(160, 48)) as pilot:
        source = await _verdict(app, pilot, "finding")
        assert "the run crashed: RuntimeError: mat1 and mat2 shapes" in source and "finding" in source


async def _verdict(app, pilot, word: str) -> str:
    """The Doctor's verdict line once it holds ``word`` (or after 20 tries)."""
    for _ in range(20):
        await pilot.pause()
        await app.workers.wait_for_complete()
        if word in str(app.screen.query_one("#doctor-source", Static).content):
            break
    return str(app.screen.query_one("#doctor-source", Static).content)


async def test_after_r_on_a_short_terminal_the_results_are_scrolled_into_view() -> None:
    app = make_app(screen="demos")
    async with app.run_test(size=(80, 24)) as pilot:
        await _run_with_r(app, pilot, "grad-accumulation")
        for _ in range(5):
            await pilot.pause()
        body = app.screen.query_one("#demos-body")
        results = app.screen.query_one("#demos-results")
        assert body.scroll_y > 0
        assert results.region.y < body.region.bottom  # at least its top is on screen


async def test_the_doctor_of_a_demo_loaded_during_a_run_is_the_demo_s() -> None:
    # The script under tensorscope run stays the run (quitting asks about it), but a demo
    # loaded after it with no run of its own is what d was asked about.
    from pathlib import Path

    from tensorscope.runsource import ReplayRun

    records = Path(__file__).resolve().parent.parent / "fixtures" / "records"
    mine = ReplayRun(str(records / "minimal_run.jsonl"))
    app = make_app(AppContext(run=mine), screen="demos")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        open_scenario_screen(app, get("inplace-autograd"), "doctor")
        await _until_the_doctor_lists(app, pilot)
        source = str(app.screen.query_one("#doctor-source", Static).content)
        assert source.startswith("demo: inplace-autograd"), source
        assert app.context.run is mine
