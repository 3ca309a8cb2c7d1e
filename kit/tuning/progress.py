"""A rich progress bar and a metrics log for HF/TRL trainers.

One callback does both, so the numbers on screen and in ``metrics.jsonl`` are the same:
step, loss, learning rate, effective (non-padding) tokens per second and ETA, plus DPO's
reward accuracy and margins when the trainer logs them (off a terminal the bar is a plain
line every 30 s, ``kit.progress``). Lines are appended with fsync, so a crash keeps every
step logged before it.
"""

from __future__ import annotations

import time
from pathlib import Path

from kit.rundir import append_jsonl

# Keys copied from trainer logs into metrics.jsonl.
KEEP = ("loss", "learning_rate", "grad_norm", "rewards/accuracies", "rewards/margins", "rewards/chosen",
        "rewards/rejected", "num_input_tokens_seen", "entropy", "mean_token_accuracy")


class _Bar:
    """The rich bar (step, loss, tokens/s, ETA), shown on the main process only."""

    def __init__(self, desc: str, total: int, done: int):
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        from kit.progress import progress

        self.progress = progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[tps]} tok/s"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), transient=False, unit="steps")
        self.progress.start()
        self.task = self.progress.add_task(desc, total=total, completed=done, loss="-", tps="-")

    def update(self, **fields) -> None:
        self.progress.update(self.task, **fields)

    def stop(self, done: int) -> None:
        self.progress.update(self.task, completed=done)
        self.progress.stop()


def log_row(state, logs: dict, tps: float) -> dict | None:
    """The metrics.jsonl row for a trainer log, or None for eval/summary logs."""
    if "loss" not in (logs or {}):
        return None  # eval or the end-of-training summary (train_loss); on_train_end records our own
    row = {"step": state.global_step, "time": round(time.time(), 3)}
    row.update({k: v for k, v in logs.items() if k in KEEP and isinstance(v, (int, float))})
    if "loss" not in row:
        return None
    row["tokens_per_s"] = round(tps, 1)
    return row


def make_callback(metrics_path: Path, desc: str, show: bool = True):
    """Build the callback class lazily: ``transformers`` is imported only by training code."""
    from transformers import TrainerCallback

    class RichTrainCallback(TrainerCallback):
        def __init__(self):
            self.metrics_path = Path(metrics_path)
            self.bar = None
            self.t0 = 0.0
            self.tok0 = 0
            self.last = {}
            self.summary = {"tokens": 0, "seconds": 0.0, "tokens_per_s": 0.0, "steps": 0}

        def on_train_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()
            self.tok0 = state.num_input_tokens_seen or 0  # a resumed run starts counting here
            if show and state.is_world_process_zero:
                self.bar = _Bar(desc, state.max_steps, state.global_step)

        def _tps(self, state) -> float:
            dt = time.perf_counter() - self.t0
            return ((state.num_input_tokens_seen or 0) - self.tok0) / dt if dt > 0 else 0.0

        def on_step_end(self, args, state, control, **kw):
            if self.bar is not None:
                self.bar.update(completed=state.global_step, tps=f"{self._tps(state):,.0f}")

        def on_log(self, args, state, control, logs=None, **kw):
            row = log_row(state, logs, self._tps(state))
            if row is None:
                return
            self.last = row
            if state.is_world_process_zero:
                append_jsonl(self.metrics_path, [row])
            if self.bar is not None:
                self.bar.update(loss=f"{row['loss']:.3f}")

        def on_train_end(self, args, state, control, **kw):
            dt = time.perf_counter() - self.t0
            tokens = (state.num_input_tokens_seen or 0) - self.tok0
            self.summary = {"tokens": int(tokens), "seconds": round(dt, 2),
                            "tokens_per_s": round(tokens / dt, 1) if dt > 0 else 0.0, "steps": state.global_step}
            if self.bar is not None:
                self.bar.stop(state.global_step)

    return RichTrainCallback()
