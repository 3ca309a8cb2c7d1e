"""Progress that a log can read: rich bars on a terminal, plain lines everywhere else.

On a terminal ``progress(...)`` is rich's ``Progress``, unchanged. When the console is not a
terminal (a file, CI, ``nohup``, ``| cat``) rich draws nothing until the end, so a slow run
looks like a hung one; there the same calls print one plain line per task at least every
``PERSKIT_PROGRESS_EVERY`` seconds (default 30) from a background thread, and a summary line
when the task ends:

    construct answers: 12/40 (1 min 30 s, ETA 3 min 30 s)
    export: quantize Q4_K_M still running (90 s)
    construct answers: 40/40 done in 5 min 2 s

A task whose description changes (export's steps) reports its current step, timed from that
change. ``counter(what, total)`` is a loop's counter with no bar on a terminal (the terminal
stays as it was); ``heartbeat(what)`` is for a step with no counter (one llama.cpp call) and
stays quiet while any other progress line is being printed. A step that fails before its
first line prints nothing more, so an error stays one line. Only the part of rich's
``Progress`` API perskit uses is provided: ``add_task``, ``advance``, ``update``,
``start``/``stop`` and the context manager.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

DEFAULT_EVERY = 30.0


def every_seconds() -> float:
    """How often a plain progress line is printed: ``PERSKIT_PROGRESS_EVERY`` or 30 s."""
    try:
        value = float(os.environ.get("PERSKIT_PROGRESS_EVERY", DEFAULT_EVERY))
    except ValueError:
        return DEFAULT_EVERY
    return value if value > 0 else DEFAULT_EVERY


def duration(seconds: float) -> str:
    """``45 s``, ``3 min 5 s``, ``1 h 2 min``."""
    s = max(0, int(round(seconds)))
    if s < 120:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


class _Spoken:
    """When any plain progress line was last printed (a heartbeat stays quiet after one)."""

    lock = threading.Lock()
    last = float("-inf")


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float
    started: float
    fields: dict = field(default_factory=dict)
    said: float = 0.0  # when this task last printed
    label: str = ""  # the first description: a task whose description names its steps is summed up by it
    created: float = 0.0
    first: float = 0.0  # completed when added (a resumed run): the ETA counts only this run's rate
    finished: bool = False  # reached its total: summed up once, then quiet


class PlainProgress:
    """rich ``Progress``'s task API, printing plain lines (see the module docstring)."""

    def __init__(self, console=None, *, name: str | None = None, unit: str = "", every: float | None = None,
                 clock=time.monotonic, thread: bool = True):
        self.console, self.name, self.unit = console, name, unit
        self.every = every or every_seconds()
        self.clock, self.thread = clock, thread
        self.tasks: dict[int, _Task] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self.spoke = False  # a periodic line was printed

    # -- rich's API -------------------------------------------------------------------------
    def add_task(self, description: str, start: bool = True, total: float | None = 100.0, completed: float = 0,
                 visible: bool = True, **fields) -> int:
        with self._lock:
            now = self.clock()
            tid = len(self.tasks)
            self.tasks[tid] = _Task(description, total, completed, now, dict(fields), said=now, label=description,
                                    created=now, first=completed)
            return tid

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def update(self, task_id: int, *, total: float | None = None, completed: float | None = None,
               advance: float | None = None, description: str | None = None, visible: bool | None = None,
               refresh: bool = False, **fields) -> None:
        with self._lock:
            t = self.tasks[task_id]
            if total is not None:
                t.total = total
            if completed is not None:
                t.completed = completed
            if advance is not None:
                t.completed += advance
            t.fields.update(fields)
            if description is not None and description != t.description:
                t.description, t.started = description, self.clock()  # a new step: its own clock
            done = t.total is not None and t.completed >= t.total
            if done and not t.finished:  # a finished task ends now, not with the whole display
                self._say(t, self.summary(t))
            t.finished = done

    def start(self) -> None:
        if self.thread and self._worker is None:
            self._stop.clear()
            self._worker = threading.Thread(target=self._run, name="perskit-progress", daemon=True)
            self._worker.start()

    def stop(self, failed: bool = False) -> None:
        self._stop.set()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=5)
        self._worker = None
        with self._lock:
            # A step that fails before its first line ends with the error's one line alone.
            if self.spoke or not failed:
                for t in self.tasks.values():
                    if not t.finished:
                        self._say(t, self.summary(t, failed))
            self.tasks.clear()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.stop(failed=exc_type is not None)
        return False

    # -- plain lines ------------------------------------------------------------------------
    def tick(self) -> None:
        """Print a line for each task that has been quiet for ``every`` seconds."""
        with self._lock:
            now = self.clock()
            for t in self.tasks.values():
                # a little early, so a line is never more than `every` after the last one
                if not t.finished and now - t.said >= self.every - min(0.5, self.every / 10):
                    self._say(t, self.line(t, now))
                    self.spoke = True

    def line(self, t: _Task, now: float | None = None) -> str:
        elapsed = (self.clock() if now is None else now) - t.started
        if t.total is None and not t.completed:
            return f"{self._what(t)} still running ({duration(elapsed)})"
        done = f"{self._count(t.completed)}/{self._count(t.total)}" if t.total is not None else self._count(t.completed)
        timing = duration(elapsed)
        if t.total and t.completed > t.first:
            timing += f", ETA {duration(elapsed / (t.completed - t.first) * max(0.0, t.total - t.completed))}"
        return f"{self._what(t)}: {done}{self._unit()} ({timing}){self._fields(t)}"

    def summary(self, t: _Task, failed: bool = False) -> str:
        what, elapsed = self._what(t, t.label), duration(self.clock() - t.created)
        if t.total is None and not t.completed:
            return f"{what}: {'stopped after' if failed else 'finished in'} {elapsed}"
        done = f"{self._count(t.completed)}/{self._count(t.total)}" if t.total is not None else self._count(t.completed)
        if failed:
            return f"{what}: stopped at {done}{self._unit()} after {elapsed}{self._fields(t)}"
        return f"{what}: {done}{self._unit()} done in {elapsed}{self._fields(t)}"

    def _what(self, t: _Task, description: str | None = None) -> str:
        d = t.description if description is None else description
        return f"{self.name} {d}" if self.name else d

    def _unit(self) -> str:
        return f" {self.unit}" if self.unit else ""

    @staticmethod
    def _count(x: float | None) -> str:
        return "?" if x is None else (str(int(x)) if float(x).is_integer() else f"{x:.1f}")

    @staticmethod
    def _fields(t: _Task) -> str:
        shown = [f"{v} tok/s" if k == "tps" else f"{k} {v}" for k, v in t.fields.items() if v not in (None, "", "-")]
        return f", {', '.join(shown)}" if shown else ""

    def _say(self, t: _Task, text: str) -> None:
        t.said = self.clock()
        with _Spoken.lock:
            _Spoken.last = time.monotonic()
        if self.console is not None:
            self.console.print(text, markup=False, highlight=False, emoji=False, soft_wrap=True)
        else:
            print(text, file=sys.stderr, flush=True)

    def _run(self) -> None:
        while not self._stop.wait(min(self.every / 2, 0.25)):
            self.tick()


def is_terminal(console=None) -> bool:
    """Whether rich draws live bars on ``console`` (default: stderr)."""
    if console is None:
        from rich.console import Console

        console = Console(stderr=True)
    return bool(console.is_terminal) and not console.is_dumb_terminal


def progress(*columns, console=None, transient: bool = False, name: str | None = None, unit: str = "",
             every: float | None = None):
    """rich ``Progress(*columns, console=, transient=)`` on a terminal, else a ``PlainProgress``
    whose lines are prefixed with ``name`` and count in ``unit``."""
    if is_terminal(console):
        from rich.progress import Progress

        return Progress(*columns, console=console, transient=transient)
    return PlainProgress(console, name=name, unit=unit, every=every)


@contextmanager
def counter(what: str, total: int | None, *, unit: str = "", console=None, every: float | None = None):
    """Yield ``advance(n=1)`` for a loop that shows no bar on a terminal (it stays as it is);
    off a terminal, ``<what>: <done>/<total> <unit> (elapsed, ETA)`` lines and a summary."""
    if is_terminal(console):
        yield lambda n=1: None
        return
    plain = PlainProgress(console, unit=unit, every=every)
    task = plain.add_task(what, total=total)
    with plain:
        yield lambda n=1: plain.advance(task, n)


def spoken() -> None:
    """Note that a line was printed outside these helpers (a stage's own ``echo``), so a
    heartbeat does not repeat it."""
    with _Spoken.lock:
        _Spoken.last = time.monotonic()


@contextmanager
def heartbeat(what: str, console=None, every: float | None = None, summary: bool = True):
    """For a step with no counter: off a terminal, ``<what> still running (90 s)`` every
    ``every`` seconds unless another progress line was printed meanwhile, then a summary
    (``summary=False``: a whole stage, whose end its own report already says)."""
    if is_terminal(console):
        yield
        return
    beat = _Heartbeat(console, every=every)
    beat.summarize = summary
    beat.add_task(what, total=None)
    with beat:
        yield


class _Heartbeat(PlainProgress):
    summarize = True

    def tick(self) -> None:
        with _Spoken.lock:
            quiet = time.monotonic() - _Spoken.last
        # later than a counter's line (at every - 0.5 s) and still within `every`: with a counter
        # running the heartbeat stays quiet instead of doubling its line
        if quiet >= self.every - min(0.25, self.every / 20):
            super().tick()

    def summary(self, t: _Task, failed: bool = False) -> str:
        return super().summary(t, failed) if self.summarize else ""

    def _say(self, t: _Task, text: str) -> None:
        if text:
            super()._say(t, text)
