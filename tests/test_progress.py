"""kit/progress.py: plain progress lines when the output is not a terminal, rich bars when it is."""

from __future__ import annotations

import io
import re
import time

import pytest
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn

from kit.progress import PlainProgress, counter, duration, every_seconds, heartbeat, progress

PLAIN = re.compile(r"^\S.*: \d+/\d+ .*\(\d+ s")


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _log() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=False, width=200), buf


def _lines(buf: io.StringIO) -> list[str]:
    return [ln for ln in buf.getvalue().splitlines() if ln.strip()]


def _wait_for(buf: io.StringIO, text: str, timeout: float = 20.0) -> None:
    """Until the background thread has printed ``text`` (a loaded CI box may be slow)."""
    deadline = time.monotonic() + timeout
    while text not in buf.getvalue():
        assert time.monotonic() < deadline, buf.getvalue()
        time.sleep(0.02)


def test_plain_lines_every_interval_with_eta_and_summary():
    console, buf = _log()
    clock = Clock()
    p = PlainProgress(console, name="construct", every=30, clock=clock, thread=False)
    with p:
        task = p.add_task("answers", total=40)
        p.advance(task, 10)
        clock.now += 29
        p.tick()
        assert _lines(buf) == []  # not yet 30 s
        clock.now += 0.6  # half a second early: the thread wakes every 0.25 s, so never past 30 s
        p.tick()
        p.tick()  # once per interval, not once per tick
        assert _lines(buf) == ["construct answers: 10/40 (30 s, ETA 89 s)"]  # 29.6 s for 10: 88.8 s left
        clock.now += 95.4
        p.advance(task, 30)  # done: summed up now, and quiet from here on
        other = p.add_task("questions", total=5)
        clock.now += 30
        p.tick()
    assert _lines(buf)[1:] == ["construct answers: 40/40 done in 2 min 5 s",
                               "construct questions: 0/5 (30 s)",
                               "construct questions: 0/5 done in 30 s"]
    assert other == 1


def test_unknown_total_step_names_and_fields():
    console, buf = _log()
    clock = Clock()
    p = PlainProgress(console, unit="prompts", every=30, clock=clock, thread=False)
    with p:
        ev = p.add_task("eval dpo", total=None)
        st = p.add_task("export", total=None)
        sft = p.add_task("sft", total=36, completed=4, loss="-", tps="-")  # resumed at step 4
        clock.now += 20
        p.update(st, description="export: quantize Q4_K_M")  # a new step: timed from here
        p.advance(ev, 7)
        p.update(sft, completed=12, loss="1.234", tps="1,200")  # 8 steps in 30 s: 24 left take 90 s
        clock.now += 10
        p.tick()
        assert _lines(buf) == ["eval dpo: 7 prompts (30 s)",
                               "export: quantize Q4_K_M still running (10 s)",
                               "sft: 12/36 prompts (30 s, ETA 90 s), loss 1.234, 1,200 tok/s"]
    assert _lines(buf)[3:] == ["eval dpo: 7 prompts done in 30 s", "export: finished in 30 s",
                               "sft: 12/36 prompts done in 30 s, loss 1.234, 1,200 tok/s"]


def test_failure_before_any_line_adds_nothing_to_the_error():
    console, buf = _log()
    clock = Clock()
    with pytest.raises(RuntimeError):
        with PlainProgress(console, every=30, clock=clock, thread=False) as p:
            p.add_task("export", total=None)
            raise RuntimeError("boom")
    assert _lines(buf) == []
    with pytest.raises(KeyboardInterrupt):
        with PlainProgress(console, every=30, clock=clock, thread=False) as p:
            t = p.add_task("answers", total=10)
            p.advance(t, 4)
            clock.now += 31
            p.tick()
            raise KeyboardInterrupt
    assert _lines(buf)[-1] == "answers: stopped at 4/10 after 31 s"


def test_factory_off_a_terminal_prints_lines_from_a_thread():
    console, buf = _log()
    with progress(TextColumn("{task.description}"), console=console, name="construct", every=0.05) as p:
        assert isinstance(p, PlainProgress)
        task = p.add_task("questions", total=3)
        p.advance(task)
        _wait_for(buf, "construct questions: 1/3 (")
    lines = _lines(buf)
    assert lines[-1] == "construct questions: 1/3 done in 0 s"


def test_terminal_keeps_the_rich_bar_and_prints_no_plain_line():
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120)
    with progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console,
                  name="construct", every=0.05) as p:
        assert not isinstance(p, PlainProgress)
        task = p.add_task("answers", total=4)
        for _ in range(4):
            p.advance(task)
            time.sleep(0.05)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buf.getvalue())
    assert "4/4" in text  # the bar
    assert not [ln for ln in text.splitlines() if PLAIN.match(ln.strip()) or "done in" in ln]
    with counter("generate", 5, console=console, every=0.05) as tick, heartbeat("quantize", console, every=0.05):
        tick(5)
        time.sleep(0.2)
    assert "generate" not in buf.getvalue() and "quantize" not in buf.getvalue()


def test_heartbeat_and_counter_off_a_terminal():
    console, buf = _log()
    with heartbeat("export: quantize Q4_K_M", console, every=0.05):
        _wait_for(buf, "still running")
    lines = _lines(buf)
    assert re.fullmatch(r"export: quantize Q4_K_M still running \(\d+ s\)", lines[0])
    assert re.fullmatch(r"export: quantize Q4_K_M: finished in \d+ s", lines[-1])
    console, buf = _log()
    with counter("generate (base model)", 4, unit="replies", console=console, every=0.05) as tick:
        tick(2)
        _wait_for(buf, "generate (base model): 2/4 replies (")
        tick(2)
    assert re.fullmatch(r"generate \(base model\): 4/4 replies done in \d+ s", _lines(buf)[-1])


def test_heartbeat_is_quiet_while_another_task_speaks():
    from kit.progress import _Heartbeat, _Spoken

    console, buf = _log()
    clock = Clock()
    beat = _Heartbeat(console, every=30, clock=clock, thread=False)
    beat.add_task("dpo: mining base_brief negatives", total=None)
    other = PlainProgress(console, every=30, clock=clock, thread=False)
    t = other.add_task("generate (sft adapter)", total=8)
    other.advance(t, 2)
    clock.now += 31
    other.tick()  # the counter just printed: the heartbeat has nothing to add
    beat.tick()
    assert _lines(buf) == ["generate (sft adapter): 2/8 (31 s, ETA 93 s)"]
    _Spoken.last = time.monotonic() - 31  # then 31 s with no line from anyone
    beat.tick()
    assert _lines(buf)[-1] == "dpo: mining base_brief negatives still running (31 s)"


def test_a_stage_heartbeat_fills_silences_only_and_leaves_the_end_to_the_stage():
    """``run_stage`` wraps every stage in ``heartbeat(stage, summary=False)``: a line after a
    silence (a stage's own echo counts as speech, via ``spoken``), and no summary line."""
    from kit.progress import _Heartbeat, _Spoken, spoken

    console, buf = _log()
    clock = Clock()
    beat = _Heartbeat(console, every=30, clock=clock, thread=False)
    beat.summarize = False
    beat.add_task("sft", total=None)
    spoken()  # the stage just echoed a line
    clock.now += 31
    beat.tick()
    assert _lines(buf) == []
    _Spoken.last = time.monotonic() - 29.6  # a counter would have spoken by now: leave it to it
    beat.tick()
    assert _lines(buf) == []
    _Spoken.last = time.monotonic() - 29.8  # nobody did: a line before 30 s of silence
    beat.tick()
    assert _lines(buf) == ["sft still running (31 s)"]
    beat.stop()
    assert _lines(buf) == ["sft still running (31 s)"]  # the stage's report says how it ended
    with heartbeat("sft", console, summary=False):  # the context manager passes the flag on
        pass
    assert _lines(buf) == ["sft still running (31 s)"]


def test_interval_from_the_environment(monkeypatch):
    monkeypatch.setenv("PERSKIT_PROGRESS_EVERY", "5")
    assert every_seconds() == 5 and PlainProgress().every == 5
    for bad in ("0", "-1", "soon"):
        monkeypatch.setenv("PERSKIT_PROGRESS_EVERY", bad)
        assert every_seconds() == 30
    assert [duration(s) for s in (0.4, 45, 119.6, 185, 3725)] == ["0 s", "45 s", "2 min 0 s", "3 min 5 s",
                                                                   "1 h 2 min"]
