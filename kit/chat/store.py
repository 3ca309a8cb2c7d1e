"""Chat history in SQLite under the kit's data dir (``$PERSKIT_HOME``, else the platform data folder).

Every message is written when it starts and updated as it streams (a reply row is
``partial=1`` until it finishes), each write in its own committed transaction with WAL
journaling, so closing the terminal mid-reply keeps everything up to the last update.
Rows with role ``note`` are shown in the UI (stage switches, trim notices) but never
sent to a model.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  title TEXT NOT NULL,
  persona TEXT NOT NULL,
  stage TEXT,
  model TEXT,
  mode TEXT NOT NULL DEFAULT 'chat',
  meta TEXT NOT NULL DEFAULT '{}',
  created REAL NOT NULL,
  updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  conv_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
  role TEXT NOT NULL,
  content TEXT NOT NULL,
  speaker TEXT,
  stage TEXT,
  partial INTEGER NOT NULL DEFAULT 0,
  created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_conv ON messages(conv_id, id);
"""


def data_dir() -> Path:
    """The kit's user data folder (``kit.home.data_home``: $PERSKIT_HOME, else platformdirs)."""
    from kit.home import data_home

    return data_home()


@dataclass
class StoredMessage:
    id: int
    role: str
    content: str
    speaker: str | None = None
    stage: str | None = None
    partial: bool = False

    def as_chat(self) -> dict:
        return {"role": self.role, "content": self.content}


@dataclass
class Conversation:
    id: int
    title: str
    persona: str
    stage: str | None
    model: str | None
    mode: str
    created: float
    updated: float
    meta: dict


class HistoryStore:
    """A small thread-safe wrapper: the TUI writes from its generation worker thread."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else data_dir() / "history.sqlite3"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)

    def _exec(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    def new_conversation(self, title: str, persona: str, *, stage: str | None = None, model: str | None = None,
                         mode: str = "chat", meta: dict | None = None) -> int:
        now = time.time()
        cur = self._exec("INSERT INTO conversations(title, persona, stage, model, mode, meta, created, updated) "
                         "VALUES (?,?,?,?,?,?,?,?)",
                         (title, persona, stage, model, mode, json.dumps(meta or {}), now, now))
        return int(cur.lastrowid)

    def add_message(self, conv_id: int, role: str, content: str, *, speaker: str | None = None,
                    stage: str | None = None, partial: bool = False) -> int:
        now = time.time()
        cur = self._exec("INSERT INTO messages(conv_id, role, content, speaker, stage, partial, created) "
                         "VALUES (?,?,?,?,?,?,?)", (conv_id, role, content, speaker, stage, int(partial), now))
        self._exec("UPDATE conversations SET updated=? WHERE id=?", (now, conv_id))
        return int(cur.lastrowid)

    def update_message(self, msg_id: int, content: str, *, partial: bool) -> None:
        self._exec("UPDATE messages SET content=?, partial=? WHERE id=?", (content, int(partial), msg_id))

    def delete_message(self, msg_id: int) -> None:
        self._exec("DELETE FROM messages WHERE id=?", (msg_id,))

    def set_title(self, conv_id: int, title: str) -> None:
        self._exec("UPDATE conversations SET title=? WHERE id=?", (title, conv_id))

    def set_stage(self, conv_id: int, stage: str) -> None:
        self._exec("UPDATE conversations SET stage=? WHERE id=?", (stage, conv_id))

    def delete_conversation(self, conv_id: int) -> None:
        self._exec("DELETE FROM conversations WHERE id=?", (conv_id,))

    def conversations(self, persona: str | None = None, limit: int = 200) -> list[Conversation]:
        sql = "SELECT id,title,persona,stage,model,mode,created,updated,meta FROM conversations"
        args: tuple = ()
        if persona is not None:
            sql += " WHERE persona=?"
            args = (persona,)
        rows = self._exec(sql + " ORDER BY updated DESC, id DESC LIMIT ?", args + (limit,)).fetchall()
        return [Conversation(*r[:8], meta=json.loads(r[8] or "{}")) for r in rows]

    def conversation(self, conv_id: int) -> Conversation | None:
        r = self._exec("SELECT id,title,persona,stage,model,mode,created,updated,meta FROM conversations "
                       "WHERE id=?", (conv_id,)).fetchone()
        return Conversation(*r[:8], meta=json.loads(r[8] or "{}")) if r else None

    def messages(self, conv_id: int) -> list[StoredMessage]:
        rows = self._exec("SELECT id,role,content,speaker,stage,partial FROM messages WHERE conv_id=? ORDER BY id",
                          (conv_id,)).fetchall()
        return [StoredMessage(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]

    # -- export ----------------------------------------------------------------------------
    def export_json(self, conv_id: int) -> dict:
        conv = self.conversation(conv_id)
        if conv is None:
            raise KeyError(conv_id)
        return {"id": conv.id, "title": conv.title, "persona": conv.persona, "stage": conv.stage,
                "model": conv.model, "mode": conv.mode, "created": conv.created, "meta": conv.meta,
                "messages": [{"role": m.role, "content": m.content, "speaker": m.speaker, "stage": m.stage,
                              "partial": m.partial} for m in self.messages(conv_id)]}

    def export_markdown(self, conv_id: int) -> str:
        data = self.export_json(conv_id)
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(data["created"]))
        lines = [f"# {data['title']}", "", f"*{data['persona']} · stage {data['stage'] or '-'} · "
                 f"{data['model'] or '-'} · {when}*", ""]
        for m in data["messages"]:
            if m["role"] == "note":
                lines += [f"> {m['content']}", ""]
                continue
            who = m["speaker"] or {"user": "You", "assistant": data["persona"], "system": "System"}.get(m["role"], m["role"])
            tail = " *(stopped)*" if m["partial"] else ""
            lines += [f"**{who}:** {m['content']}{tail}", ""]
        return "\n".join(lines)

    def export(self, conv_id: int, path: str | Path) -> Path:
        from kit.rundir import atomic_write_json, atomic_write_text

        path = Path(path)
        if path.suffix.lower() == ".json":
            atomic_write_json(path, self.export_json(conv_id))
        else:
            atomic_write_text(path, self.export_markdown(conv_id))
        return path

    def close(self) -> None:
        with self._lock:
            self._db.close()
