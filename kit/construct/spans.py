"""Instruction back-translation (Humpback-style): answers taken from the persona's own words.

A 135M teacher cannot write a good in-voice answer, but it can write a question. For each
subjective passage (diary, letter, speech) we cut a self-contained, first-person span of
consecutive sentences, lightly trimmed of markup and editorial notes; the teacher writes
the question it answers, and the relevance gate checks the pair like any other row.
"""

from __future__ import annotations

import re

from kit.text import sentences as split_sentences

_FIRST = re.compile(r"\b(I|my|me|mine|myself|we|our|us)\b")
# A chapter heading that ingest joined to the paragraph after it ("XII DEFENSE OF THE PROVINCE
# I had, on the whole, ..."): two or more all-capital words or roman numerals, then prose.
_HEADING = re.compile(r"^(?:(?:[IVXLC]+|[A-Z][A-Z'’,-]+)[.:]?\s+){2,}(?=[A-Z][a-z]|I\s+[a-z])")
# an editorial note in brackets ("[Illustration: ...]", "[Footnote 3: ...]")
_NOTE = re.compile(r"\[[^\]]{0,300}\]")
# a span must not open on a word that points back at text we cut away
_DANGLING = re.compile(r"^[\"'“‘(]?(and|but|so|or|this|that|these|those|it|he|she|they|him|her|them|then|there|"
                       r"also|however|still|yet|which|such|both|here)\b", re.I)


def clean(text: str) -> str:
    """Drop headings, italic editorial notes and date labels; keep the persona's sentences."""
    lines = []
    for line in (text or "").splitlines():
        s = line.strip()
        if not s or s.startswith("#") or re.fullmatch(r"\*[^*].*\*", s):
            continue
        s = re.sub(r"^\*\*[^*]{1,60}\*\*\s*", "", s)  # "**Monday 2 February.** Water in..."
        s = re.sub(r"[*_`]+", "", _HEADING.sub("", _NOTE.sub("", s)))
        if s.strip():
            lines.append(s)
    return re.sub(r"\s+", " ", " ".join(lines)).strip()


def sentences(text: str) -> list[str]:
    return split_sentences(clean(text))


def first_person_spans(text: str, n: int | None, min_words: int = 25, max_words: int = 90) -> list[str]:
    """Up to ``n`` (None: every) non-overlapping spans, most first-person first (ties: earliest)."""
    sents = sentences(text)
    scored = []
    for i in range(len(sents)):
        if _DANGLING.match(sents[i]):
            continue
        words = 0
        for j in range(i, len(sents)):
            words += len(sents[j].split())
            if words > max_words:
                break
            if words >= min_words:
                window = sents[i:j + 1]
                share = sum(bool(_FIRST.search(s)) for s in window) / len(window)
                if share >= 0.5:
                    scored.append((-share, i, j))
                break
    picked: list[tuple[int, int]] = []
    for _, i, j in sorted(scored):
        if n is not None and len(picked) >= n:
            break
        if all(j < a or i > b for a, b in picked):
            picked.append((i, j))
    return [" ".join(sents[i:j + 1]) for i, j in sorted(picked)]
