"""Run directories, stage manifests and crash-safe file writes.

Layout: ``runs/<persona>-<recipe>/`` holds ``recipe.resolved.yaml`` and one folder
per stage (construct, sft, dpo, eval, export). Each stage folder has a
``manifest.json`` with its inputs' hashes, config hash, status, counts and timings.
What one stage writes and another reads is named once, as a ``RunDir`` property
(``run.train_rows``, ``run.sft_adapter``, ...), so no consumer spells a producer's path.
A stage whose manifest says ``done`` with the same input hash is skipped; an
interrupted one resumes from its append-only outputs.

Every write is either atomic (temp file in the same folder + ``os.replace``) or an
fsync'ed append of whole JSON lines, so a crash or Ctrl-C never leaves a torn file
that a rerun would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, get_origin

# A stage's manifest: status, inputs_hash, counts, metrics, timings and what it recorded
# for later stages (the sft stage's ``base``). Plain JSON on disk.
Manifest = dict[str, Any]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def append_jsonl(path: Path, rows: Iterable[dict]) -> int:
    """Append whole lines and fsync: a crash can lose at most the line being written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
        f.flush()
        os.fsync(f.fileno())
    return n


def read_jsonl(path: Path) -> list[dict]:
    """Read a JSONL file, ignoring a torn final line left by a crash mid-append."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break  # torn tail from an interrupted append: drop it, the rerun redoes it
            raise
    return rows


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def hash_obj(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def settings(model) -> dict:
    """A config section as a stage's inputs hash sees it: fields at their default are left out,
    so a perskit that adds a setting (at a default that keeps the old behaviour) does not redo a
    finished stage (train.gold_repeat once restarted a 20-min SFT that way). A field that is set
    goes in whole, and a tag (``kind``, ``backend``: a Literal) always goes in, so switching
    teacher or backend still counts as a change."""
    full, changed = model.model_dump(mode="json"), model.model_dump(mode="json", exclude_defaults=True)
    fields = type(model).model_fields
    return {k: v for k, v in full.items()
            if k in changed or (k in fields and get_origin(fields[k].annotation) is Literal)}


def hash_paths(paths: Iterable[Path]) -> str:
    """Content hash of files and folders (sorted, names included)."""
    h = hashlib.sha256()
    for p in sorted(Path(x) for x in paths):
        files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
        for q in files:
            h.update(str(q.name).encode())
            h.update(sha256_file(q).encode() if q.exists() else b"missing")
    return h.hexdigest()[:16]


class StageDir:
    """One stage's folder in a run, with its manifest (not a persona's life stage)."""

    def __init__(self, run: "RunDir", name: str):
        self.run = run
        self.name = name
        self.path = run.path / name
        self.manifest_path = self.path / "manifest.json"

    def manifest(self) -> Manifest:
        if not self.manifest_path.exists():
            return {}
        try:
            return json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {}

    def is_done(self, inputs_hash: str) -> bool:
        m = self.manifest()
        return m.get("status") == "done" and m.get("inputs_hash") == inputs_hash

    def begin(self, inputs_hash: str, **extra: Any) -> Manifest:
        self.run.flush_recipe()
        self.path.mkdir(parents=True, exist_ok=True)
        m = self.manifest()
        if m.get("inputs_hash") != inputs_hash:
            if m.get("status") == "done":  # a finished stage redone: keep its record (figures, times, log)
                atomic_write_json(self.manifest_path.with_name("manifest.prev.json"), m)
                log = self.path / "metrics.jsonl"
                if log.is_file():  # copied, not moved: a --resume with new settings appends to it
                    shutil.copyfile(log, log.with_name("metrics.prev.jsonl"))
            m = {}  # inputs changed: the old partial state is not trusted for status
        m.update({"stage": self.name, "status": "running", "inputs_hash": inputs_hash,
                  "started_at": m.get("started_at") or time.time(), **extra})
        atomic_write_json(self.manifest_path, m)
        return m

    def finish(self, **extra: Any) -> Manifest:
        m = self.manifest()
        m.update({"status": "done", "finished_at": time.time(), **extra})
        if "started_at" in m:
            m["wall_s"] = round(m["finished_at"] - m["started_at"], 2)
        atomic_write_json(self.manifest_path, m)
        return m

    def update(self, **extra: Any) -> None:
        m = self.manifest()
        m.update(extra)
        atomic_write_json(self.manifest_path, m)


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()
        self._pending_recipe = None  # written by the first stage that begins (see remember_recipe)

    @classmethod
    def for_recipe(cls, loaded, run_dir: str | Path | None) -> "RunDir":
        if run_dir is None:
            from kit.spec.persona import slug

            persona = loaded.persona_path()
            name = persona.name if persona.is_dir() else persona.parent.name
            run_dir = loaded.root / "runs" / f"{slug(name)}-{slug(loaded.spec.name)}"
        return cls(run_dir)

    def stage(self, name: str) -> StageDir:
        return StageDir(self, name)

    # -- artifacts: what one stage writes and the next reads ------------------------------
    @property
    def passages(self) -> Path:
        return self.path / "construct" / "passages.jsonl"

    @property
    def train_rows(self) -> Path:
        """SFT rows (``{"messages": [...], "meta": {...}}``), written by construct."""
        return self.path / "construct" / "train.jsonl"

    @property
    def test_rows(self) -> Path:
        """Held-out rows in the same format, written by construct."""
        return self.path / "construct" / "test.jsonl"

    @property
    def sft_adapter(self) -> Path:
        """The PEFT adapter folder written by the sft stage."""
        return self.path / "sft" / "adapter"

    @property
    def dpo_pairs(self) -> Path:
        """Preference pairs (``{"prompt", "chosen", "rejected", "meta"}``), written by dpo."""
        return self.path / "dpo" / "pairs.jsonl"

    @property
    def dpo_adapter(self) -> Path:
        return self.path / "dpo" / "adapter"

    @property
    def eval_results(self) -> Path:
        return self.path / "eval" / "results.json"

    @property
    def eval_report(self) -> Path:
        return self.path / "eval" / "report.md"

    @staticmethod
    def has_adapter(folder: Path) -> bool:
        """A finished adapter folder (written atomically, so its config marks it complete)."""
        return (folder / "adapter_config.json").is_file()

    def remember_recipe(self, recipe) -> None:
        """Save ``recipe.resolved.yaml`` when a stage actually begins, so a command that fails
        on bad input (an unreadable source, a missing adapter) leaves no run folder behind."""
        self._pending_recipe = recipe

    def flush_recipe(self) -> None:
        if self._pending_recipe is not None:
            self.write_recipe(self._pending_recipe)
            self._pending_recipe = None

    def write_recipe(self, recipe) -> None:
        from kit.spec.recipe import dump_resolved

        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path / "recipe.resolved.yaml", dump_resolved(recipe))


def peak_rss_mb() -> float:
    """Peak resident memory of this process (and waited-for children), in MiB."""
    import resource

    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(self_kb, child_kb) / 1024, 1)


def replace_dir(tmp: Path, dest: Path) -> None:
    """Move a finished temp folder (built beside ``dest``) into place, replacing an old one.

    Builders write into a temp folder in the same parent and call this last, so a crash
    leaves either the old folder or the new one, never a half-written one.
    """
    import shutil

    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)


@contextmanager
def build_lock(dest: Path) -> Iterator[None]:
    """Hold an exclusive lock (``.<name>.lock`` beside ``dest``) while this process builds a
    shared cached ``dest``: a second process (a parallel test worker, a second run) waits, then
    finds the finished build instead of building it again or replacing it under a reader.
    POSIX ``flock``; where there is none the build still lands atomically, just maybe twice."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    with open(dest.with_name(f".{dest.name}.lock"), "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
