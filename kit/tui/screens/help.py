"""Help screen: slash commands and key bindings."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# perskit chat

| key | action |
| --- | --- |
| Enter | send the message |
| Ctrl+J | new line in the message (also Shift/Alt+Enter where the terminal sends them) |
| Esc / Ctrl+C | stop the reply (the partial text is kept and saved) |
| Ctrl+R | regenerate the last reply |
| Ctrl+G | edit the last message |
| Ctrl+O | copy the last reply to the clipboard |
| Ctrl+P | command palette: stage, persona, export, copy... |
| Ctrl+L | new conversation (the old one stays in the history) |
| Ctrl+T | switch life stage |
| Ctrl+S | sampling settings |
| Ctrl+B | show/hide the history sidebar |
| F1 | this help |
| Ctrl+Q | quit |

| command | action |
| --- | --- |
| /help | this help |
| /stage [id] | switch stage (no id: pick from a list) |
| /stages | list the stages |
| /regen, /edit, /clear, /copy | as the keys above |
| /settings | temperature, top-p, max tokens, seed |
| /history | toggle the sidebar; /open N reopens conversation N |
| /export [md\\|json] [path] | export this conversation (default: the data dir) |
| /agents N topic | the personas discuss *topic* for N turns; type to interject (after the last turn, each answers once more) |
| /stop | stop the reply or discussion |
| /quit | quit |

Conversations are saved as you type and as replies stream, in SQLite under
`$PERSKIT_HOME` (default: the platform data folder, `$XDG_DATA_HOME/perskit` or
`~/.local/share/perskit` on Linux). Press Esc to close.
"""


# Listed only when the chat retrieves passages (--retrieve K): the key does nothing useful otherwise.
RETRIEVAL_KEY = "| F2, /passages | show/hide the persona's passages retrieval gave the last reply |\n"


class HelpScreen(ModalScreen[None]):
    BINDINGS = [("escape", "dismiss", "close"), ("f1", "dismiss", "close"), ("q", "dismiss", "close")]

    def __init__(self, retrieval: bool = False) -> None:
        super().__init__()
        self.retrieval = retrieval

    def compose(self) -> ComposeResult:
        text = HELP.replace("| F1 | this help |\n", "| F1 | this help |\n" + RETRIEVAL_KEY) if self.retrieval else HELP
        with VerticalScroll(id="help-box"):
            yield Markdown(text)
