"""Stage switcher: pick the persona's life stage (its system prompt changes)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option


class StageScreen(ModalScreen[str | None]):
    BINDINGS = [("escape", "dismiss(None)", "cancel")]

    def __init__(self, stages: list, current: str) -> None:
        super().__init__()
        self.stages, self.current = stages, current

    def compose(self) -> ComposeResult:
        with Vertical(id="stage-box"):
            yield Label("Switch life stage (Enter picks, Esc cancels)")
            yield OptionList(*[Option(f"{'● ' if s.id == self.current else '  '}{s.label} ({s.id})", id=s.id)
                               for s in self.stages], id="stage-list")

    def on_mount(self) -> None:
        ol = self.query_one(OptionList)
        ids = [s.id for s in self.stages]
        ol.highlighted = ids.index(self.current) if self.current in ids else 0
        ol.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)
