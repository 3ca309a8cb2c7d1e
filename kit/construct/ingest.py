"""Ingest a persona's sources into passages with deterministic content-hash ids.

Formats: .txt/.md (strict UTF-8), .html/.htm (BeautifulSoup), .pdf (pypdf), .epub
(ebooklib + BeautifulSoup). Anything we cannot read honestly — encrypted or damaged
PDFs, PDFs without a text layer, binary junk, non-UTF-8 text, empty files — stops
with a one-line KitError naming the file and the fix, before any teacher call is made.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

from kit.errors import KitError, raise_all, require

FORMATS = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".epub")
# Sources are untrusted: caps keep a wrong file (a video renamed .txt) or a compressed EPUB
# that expands without end from filling memory before the one-line error. A long book is
# a few MB of text; these leave two orders of magnitude.
MAX_SOURCE_BYTES = 200 * 2**20
MAX_TEXT_CHARS = 50_000_000


def _fail(path: Path, msg: str, fix: str) -> KitError:
    return KitError(msg, where=path, fix=fix)


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if b"\x00" in data[:65536]:
        raise _fail(path, "looks like a binary file, not text", "export it as UTF-8 .txt/.md, or use .pdf/.epub")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _fail(path, f"is not valid UTF-8 (byte {exc.start})",
                    "re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None


def _html_text(markup: str | bytes) -> str:
    bs4 = require("bs4", "ingest", "reading .html/.epub sources")
    soup = bs4.BeautifulSoup(markup, "html.parser")
    for tag in soup(["script", "style", "nav", "head"]):
        tag.decompose()
    # block elements become paragraph breaks so passages follow the document's structure
    for tag in soup.find_all(["p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "tr"]):
        tag.insert_after("\n\n")
    return soup.get_text()


def _read_pdf(path: Path) -> str:
    import logging

    pypdf = require("pypdf", "ingest", "reading .pdf sources")
    # pypdf logs parser complaints to stderr; a damaged file is reported once, as a KitError line
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = pypdf.PdfReader(str(path))
        if reader.is_encrypted:
            try:
                ok = reader.decrypt("")
            except Exception:  # noqa: BLE001 - pypdf raises several types for unsupported crypto
                ok = 0
            if not ok:
                raise _fail(path, "is an encrypted PDF", "remove the password (e.g. qpdf --decrypt) and retry")
        pages = [(p.extract_text() or "") for p in reader.pages]
    except KitError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parser failure means a damaged file
        raise _fail(path, f"cannot be read as a PDF ({type(exc).__name__})",
                    "check the file is a valid PDF, or export the text to .txt") from None
    text = "\n\n".join(pages)
    if not text.strip():
        raise _fail(path, "PDF has no text layer (scanned?)", "OCR it first (e.g. ocrmypdf) or supply a .txt")
    return text


def _read_epub(path: Path) -> str:
    require("ebooklib", "ingest", "reading .epub sources")
    import ebooklib
    from ebooklib import epub

    try:
        book = epub.read_epub(str(path), options={"ignore_ncx": True})
        docs = [it.get_content() for it in book.get_items() if it.get_type() == ebooklib.ITEM_DOCUMENT]
    except Exception as exc:  # noqa: BLE001 - zip/xml errors from a damaged or fake epub
        raise _fail(path, f"cannot be read as an EPUB ({type(exc).__name__})",
                    "check the file is a valid, DRM-free EPUB") from None
    return "\n\n".join(_html_text(d) for d in docs)


def read_source(path: str | Path) -> str:
    """The normalised text of one source file (KitError on anything unreadable)."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in FORMATS:
        raise _fail(path, f"unsupported format '{ext or '(none)'}'", f"use one of {' '.join(FORMATS)}")
    size = path.stat().st_size
    if size == 0:
        raise _fail(path, "is empty", "add text to the file or remove it from sources")
    if size > MAX_SOURCE_BYTES:
        raise _fail(path, f"is {size / 2**20:.1f} MB, over the {MAX_SOURCE_BYTES / 2**20:.0f} MB limit for a source",
                    "split it into several files, or give the text of the part about the persona")
    if ext == ".pdf":
        text = _read_pdf(path)
    elif ext == ".epub":
        text = _read_epub(path)
    elif ext in (".html", ".htm"):
        text = _html_text(_read_text(path))
    else:
        text = _read_text(path)
    if len(text) > MAX_TEXT_CHARS:
        raise _fail(path, f"expands to {len(text):,} characters, over the {MAX_TEXT_CHARS:,} limit",
                    "split it into several files, or give the text of the part about the persona")
    text = normalise(text)
    if not text:
        raise _fail(path, "has no readable text", "add text to the file or remove it from sources")
    return text


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    paras = [re.sub(r"\s+", " ", p).strip() for p in re.split(r"\n\s*\n", text)]
    return "\n\n".join(p for p in paras if p)


def split_passages(text: str, target_words: int) -> list[str]:
    """Group paragraphs to about ``target_words``; split over-long paragraphs at sentences."""
    units: list[str] = []
    for para in text.split("\n\n"):
        if len(para.split()) <= target_words * 1.5:
            units.append(para)
            continue
        cur: list[str] = []
        for sent in re.split(r"(?<=[.!?])\s+", para):
            cur.append(sent)
            if len(" ".join(cur).split()) >= target_words:
                units.append(" ".join(cur))
                cur = []
        if cur:
            units.append(" ".join(cur))
    passages, cur, n = [], [], 0
    for u in units:
        w = len(u.split())
        if cur and n + w > target_words * 1.3:
            passages.append("\n\n".join(cur))
            cur, n = [], 0
        cur.append(u)
        n += w
    if cur:
        passages.append("\n\n".join(cur))
    # a tiny tail carries too little for a question: fold it into the previous passage
    if len(passages) > 1 and len(passages[-1].split()) < target_words // 4:
        passages[-2] += "\n\n" + passages.pop()
    return passages


def passage_id(kind: str, stage: str, text: str) -> str:
    return hashlib.sha256(f"{kind}|{stage}|{text}".encode("utf-8")).hexdigest()[:16]


def open_source(path: str | Path) -> str:
    """``read_source``, with OS-level failures (permissions, a vanished file) as KitErrors.

    ``perskit persona validate`` passes this to ``load_persona(read=...)``, so every source
    is opened and extracted exactly as construction will, before any model is involved.
    """
    try:
        return read_source(path)
    except OSError as exc:
        raise _fail(Path(path), f"cannot be opened ({exc.strerror or type(exc).__name__})",
                    "check the file's permissions and that it still exists") from None


def read_all(lp) -> list[str]:
    """The text of every source, in order; all unreadable ones are reported together."""
    texts, problems = [], []
    for src in lp.spec.sources:
        try:
            texts.append(open_source(lp.source_path(src)))
        except KitError as exc:
            problems.append(exc)
    raise_all(problems)
    return texts


def ingest_persona(lp, passage_words: int) -> list[dict]:
    """All passages of a loaded persona, in source order, identical text de-duplicated."""
    spec = lp.spec
    out, seen = [], set()
    for src, source_text in zip(spec.sources, read_all(lp)):
        for pos, text in enumerate(split_passages(source_text, passage_words)):
            pid = passage_id(src.kind, src.stage, text)
            if pid in seen:
                continue
            seen.add(pid)
            out.append({"id": pid, "source": src.path, "kind": src.kind, "stage": src.stage,
                        "stage_index": spec.stage_index(src.stage), "position": pos,
                        "title": src.title, "words": len(text.split()), "text": text})
    return out
