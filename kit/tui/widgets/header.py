"""Persona header (name, stage, model, quant) and the status line (tokens/s, context use)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class PersonaHeader(Static):
    def show(self, name: str, stage_label: str, model: str, quant: str, mode: str = "chat") -> None:
        t = Text()
        t.append(f" {name} ", style="bold reverse")
        t.append(f" stage: {stage_label} ", style="bold")
        t.append(f"· {model} · {quant}", style="dim")
        if mode != "chat":
            t.append(f"  [{mode}]", style="bold magenta")
        self.update(t)


class StatusLine(Static):
    def show(self, *, generating: bool, tok_per_s: float = 0.0, ttft_s: float | None = None,
             ctx_used: int = 0, n_ctx: int = 0, note: str = "") -> None:
        parts = ["● generating (Esc stops)" if generating else "ready"]
        if tok_per_s:
            parts.append(f"{tok_per_s:.1f} tok/s")
        if ttft_s is not None:
            parts.append(f"ttft {ttft_s:.2f}s")
        if n_ctx:
            parts.append(f"ctx {ctx_used}/{n_ctx} ({100 * ctx_used // max(1, n_ctx)}%)")
        if note:
            parts.append(note)
        self.update(Text(" · ".join(parts), style="dim" if not generating else "bold"))
