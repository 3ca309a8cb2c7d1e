"""Sampling settings: temperature, top-p, min-p, repeat penalty, max tokens, seed (validated by GenParams)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label


class SettingsScreen(ModalScreen[dict | None]):
    """Dismisses with a dict of new values (validated by the caller's params model) or None."""

    BINDINGS = [("escape", "dismiss(None)", "cancel")]
    FIELDS = (("temperature", "0-2"), ("top_p", "0-1"), ("min_p", "0-1"), ("repeat_penalty", "1 = off"),
              ("max_tokens", ">=1"), ("seed", "-1 = random"))
    INTS = {"max_tokens", "seed"}

    def __init__(self, values: dict, validate) -> None:
        super().__init__()
        self.values, self.validate = values, validate

    def compose(self) -> ComposeResult:
        with Vertical(id="settings-box"):
            yield Label("Sampling settings (Enter saves, Esc cancels)")
            with Grid(id="settings-grid"):
                for name, hint in self.FIELDS:
                    yield Label(f"{name} ({hint})")
                    yield Input(str(self.values.get(name, "")), id=f"set-{name}", compact=True)
            yield Label("", id="settings-error")
            with Horizontal(id="settings-buttons"):
                yield Button("Save", variant="primary", id="save")
                yield Button("Cancel", id="cancel")

    def _collect(self) -> dict | None:
        raw = {name: self.query_one(f"#set-{name}", Input).value.strip() for name, _ in self.FIELDS}
        try:
            values = {k: int(v) if k in self.INTS else float(v) for k, v in raw.items()}
            self.validate(values)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError too
            errors = getattr(exc, "errors", None)
            if errors:
                first = errors()[0]
                text = f"{'.'.join(str(x) for x in first['loc'])}: {first['msg']}"
            else:
                text = f"not a number: {exc}"
            self.query_one("#settings-error", Label).update(Text(text, style="red"))
            return None
        return values

    def on_input_submitted(self, event: Input.Submitted) -> None:
        values = self._collect()
        if values is not None:
            self.dismiss(values)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
            return
        values = self._collect()
        if values is not None:
            self.dismiss(values)
