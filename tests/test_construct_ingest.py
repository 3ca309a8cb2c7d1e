"""Ingest: every supported format, passage ids/metadata, and one-line errors for bad files."""

from __future__ import annotations

import pytest

from kit.construct.ingest import ingest_persona, passage_id, read_source, split_passages
from kit.errors import KitError

TEXT = ("The Fennick Swing Bridge turned on a cast-iron ring. I measured nine millimetres of wear "
        "on the turntable and found no greasing logged since 1946.")


def make_pdf(path, text: str | None, password: str | None = None):
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    w = PdfWriter()
    page = w.add_blank_page(width=612, height=792)
    if text is not None:
        font = DictionaryObject({NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
                                 NameObject("/BaseFont"): NameObject("/Helvetica")})
        page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): DictionaryObject(
            {NameObject("/F1"): w._add_object(font)})})
        stream = DecodedStreamObject()
        stream.set_data(f"BT /F1 10 Tf 20 700 Td ({text}) Tj ET".encode("latin-1"))
        page[NameObject("/Contents")] = w._add_object(stream)
    if password:
        w.encrypt(password)
    with open(path, "wb") as f:
        w.write(f)


def make_epub(path, paragraphs: list[str]):
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("perskit-test")
    book.set_title("Test")
    book.set_language("en")
    ch = epub.EpubHtml(title="One", file_name="one.xhtml", lang="en")
    ch.content = "<html><body>" + "".join(f"<p>{p}</p>" for p in paragraphs) + "</body></html>"
    book.add_item(ch)
    book.toc = [ch]
    book.spine = ["nav", ch]
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    epub.write_epub(str(path), book)


def test_txt_md_html(tmp_path):
    (tmp_path / "a.txt").write_text(TEXT + "\n\n\nSecond   paragraph\r\nhere.", encoding="utf-8")
    assert read_source(tmp_path / "a.txt") == TEXT + "\n\nSecond paragraph here."
    (tmp_path / "b.md").write_text("# Title\n\n" + TEXT, encoding="utf-8")
    assert TEXT in read_source(tmp_path / "b.md")
    (tmp_path / "c.html").write_text(f"<html><head><title>x</title><script>var a=1;</script></head>"
                                     f"<body><h1>Diary</h1><p>{TEXT}</p><p>Next day.</p></body></html>")
    text = read_source(tmp_path / "c.html")
    assert "var a" not in text and text.split("\n\n") == ["Diary", TEXT, "Next day."]


def test_pdf_and_epub(tmp_path):
    make_pdf(tmp_path / "a.pdf", "Nine millimetres of wear on the turntable")
    assert "Nine millimetres of wear" in read_source(tmp_path / "a.pdf")
    make_epub(tmp_path / "b.epub", [TEXT, "Letters from 1955."])
    text = read_source(tmp_path / "b.epub")
    assert TEXT in text and "Letters from 1955." in text


@pytest.mark.parametrize("name,data,needle", [
    ("empty.txt", b"", "is empty"),
    ("blank.md", b"   \n\n  ", "no readable text"),
    ("junk.txt", bytes(range(256)) * 4, "binary"),
    ("latin.txt", "caf\xe9 au lait".encode("latin-1"), "not valid UTF-8"),
    ("fake.pdf", b"%PDF-1.4 this is not really a pdf", "cannot be read as a PDF"),
    ("fake.epub", b"PK not a zip", "cannot be read as an EPUB"),
    ("notes.docx", b"whatever", "unsupported format"),
])
def test_bad_files_one_line(tmp_path, name, data, needle):
    p = tmp_path / name
    p.write_bytes(data)
    with pytest.raises(KitError) as ei:
        read_source(p)
    line = ei.value.one_line()
    assert needle in line and name in line and "fix:" in line and "\n" not in line


def test_encrypted_and_scanned_pdf(tmp_path):
    make_pdf(tmp_path / "locked.pdf", "secret text", password="pw")
    with pytest.raises(KitError, match="encrypted PDF"):
        read_source(tmp_path / "locked.pdf")
    make_pdf(tmp_path / "scan.pdf", None)
    with pytest.raises(KitError, match="no text layer"):
        read_source(tmp_path / "scan.pdf")


def test_split_and_ids_deterministic():
    paras = [" ".join(f"w{i}_{j}" for j in range(50)) for i in range(9)]
    text = "\n\n".join(paras)
    a, b = split_passages(text, 120), split_passages(text, 120)
    assert a == b and len(a) == 3
    assert all(90 <= len(p.split()) <= 160 for p in a)
    # nothing lost, order kept
    assert " ".join(" ".join(a).split()) == " ".join(text.split())
    long = ". ".join(f"Sentence number {i} has six words" for i in range(100)) + "."
    parts = split_passages(long, 60)
    assert len(parts) > 5 and all(len(p.split()) <= 100 for p in parts)
    assert passage_id("objective", "s1", "x") == passage_id("objective", "s1", "x") != passage_id("subjective", "s1", "x")


def test_ingest_persona_metadata(tmp_path):
    from kit.spec.persona import load_persona

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "bio.md").write_text(TEXT + "\n\n" + TEXT.upper(), encoding="utf-8")
    make_pdf(tmp_path / "src" / "diary.pdf", "I wrote this diary in 1960 about the viaduct")
    (tmp_path / "persona.yaml").write_text(
        "id: t\nname: T\nidentity: An engineer.\nstages:\n"
        "  - {id: early, label: Early, period: '1950-1957'}\n  - {id: late, label: Late, period: '1958-1970'}\n"
        "sources:\n  - {path: src/bio.md, kind: objective, stage: early}\n"
        "  - {path: src/diary.pdf, kind: subjective, stage: late}\n", encoding="utf-8")
    ps = ingest_persona(load_persona(tmp_path), 100)
    assert [(p["kind"], p["stage"], p["stage_index"], p["source"], p["position"]) for p in ps] == [
        ("objective", "early", 0, "src/bio.md", 0), ("subjective", "late", 1, "src/diary.pdf", 0)]
    assert ps == ingest_persona(load_persona(tmp_path), 100)
    assert len({p["id"] for p in ps}) == 2 and all(len(p["id"]) == 16 for p in ps)


def test_oversized_sources_are_refused_in_one_line(tmp_path, monkeypatch):
    """Caps on untrusted sources: the file's size, then the text it expands to (an EPUB or
    HTML file can expand); lowered here so the test writes small files."""
    import kit.construct.ingest as ingest

    big = tmp_path / "big.txt"
    big.write_text(TEXT * 40, encoding="utf-8")
    assert read_source(big)  # under the real caps
    monkeypatch.setattr(ingest, "MAX_SOURCE_BYTES", 1024)
    with pytest.raises(KitError) as e:
        read_source(big)
    line = e.value.one_line()
    assert line.startswith(str(big)) and "limit for a source" in line and "(fix: split it" in line
    monkeypatch.setattr(ingest, "MAX_SOURCE_BYTES", 10 * 2**20)
    monkeypatch.setattr(ingest, "MAX_TEXT_CHARS", 1000)
    with pytest.raises(KitError) as e:
        read_source(big)
    assert "expands to" in e.value.one_line() and "over the 1,000 limit" in e.value.one_line()
