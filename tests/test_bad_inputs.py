"""A corpus of bad inputs, each run through the real CLI in a subprocess.

Every case must end with exit code 2, exactly one non-empty line on stderr starting with
``perskit: error:``, no ``Traceback`` anywhere, and no partial output: the project tree
(and the kit's home) is the same before and after, except where a case names what may
appear (a few export cases may leave the run folder's ``recipe.resolved.yaml``; sources are
read before anything, that file included, is written).

Each case gets a fresh copy of a small valid project (persona + two sources + recipe),
breaks one thing, and names the command to run. Almost all fail at validation, before any
model loads; the truncated-GGUF case needs a real GGUF (converted once per session).
"""

from __future__ import annotations

import json
import os
import subprocess
import random
import sys
from pathlib import Path

import pytest
from spec_helpers import alias_bomb, flow_bomb

PERSONA = """\
id: good
name: Good Person
identity: A retired bridge engineer from a small port town.
style: [plain, exact]
stages:
  - {id: early, label: Early years, period: "1950-1960"}
  - {id: late, label: Later years, period: "1980-1990"}
sources:
  - {path: sources/bio.md, kind: objective, stage: early}
  - {path: sources/diary.md, kind: subjective, stage: late}
big_five: {O: 3.5, C: 4.5, E: 2.0, A: 3.0, N: 2.5}
gold:
  - {q: "What did you build first?", a: "A footbridge over the canal; it is still there.", stage: early}
"""
RECIPE = """\
name: bad
persona: personas/good
teacher: {kind: scripted}
construct: {max_passages: 2}
train: {backend: trl, model: tiny-llama-spm, max_steps: 2}
export: {quants: [Q8_0]}
"""
BIO = "Good Person was born in 1931 in a port town. She trained as a draughtsman and built bridges.\n"
DIARY = "I checked the rivets again today. Nobody thanked me, and nobody needed to.\n"


# -- helpers that build a broken thing inside the project ------------------------------------
def _persona(p: Path) -> Path:
    return p / "personas" / "good" / "persona.yaml"


def edit_persona(old: str, new: str):
    def apply(p: Path):
        f = _persona(p)
        text = f.read_text()
        assert old in text, old
        f.write_text(text.replace(old, new, 1))
    return apply


def write_persona(content: bytes | str):
    def apply(p: Path):
        f = _persona(p)
        f.write_bytes(content if isinstance(content, bytes) else content.encode())
    return apply


def edit_recipe(old: str, new: str):
    def apply(p: Path):
        f = p / "recipe.yaml"
        text = f.read_text()
        assert old in text, old
        f.write_text(text.replace(old, new, 1))
    return apply


def write_recipe(content: str):
    def apply(p: Path):
        (p / "recipe.yaml").write_text(content)
    return apply


def source(name: str, data, kind: str = "objective"):
    """Add a source file ``name`` with ``data`` (bytes, or a function making them) to the persona."""
    def apply(p: Path):
        folder = p / "personas" / "good"
        (folder / "sources" / name).write_bytes(data() if callable(data) else data)
        f = folder / "persona.yaml"
        f.write_text(f.read_text().replace(
            "sources:\n", f"sources:\n  - {{path: sources/{name}, kind: {kind}, stage: early}}\n", 1))
    return apply


def _pdf(encrypt: bool = False) -> bytes:
    import io

    from pypdf import PdfWriter

    w = PdfWriter()
    w.add_blank_page(width=200, height=200)
    if encrypt:
        w.encrypt("s3cret", algorithm="RC4-128")  # needs no extra crypto package
    buf = io.BytesIO()
    w.write(buf)
    return buf.getvalue()


def _gguf_header_only() -> bytes:
    # magic, version 3, 1 tensor, 1 kv, then the file simply ends
    return b"GGUF" + (3).to_bytes(4, "little") + (1).to_bytes(8, "little") + (1).to_bytes(8, "little")


def bundle(manifest: bytes | None, *, gguf: bytes | None = None, gguf_name: str = "good-Q8_0.gguf"):
    def apply(p: Path):
        b = p / "export" / "good"
        b.mkdir(parents=True)
        if manifest is not None:
            (b / "manifest.json").write_bytes(manifest)
        if gguf is not None:
            (b / gguf_name).write_bytes(gguf)
    return apply


def gguf_file(data: bytes | str, name: str = "model.gguf"):
    def apply(p: Path):
        if data == "truncated":
            from chat_helpers import tiny_gguf

            real = tiny_gguf(Path(os.environ["PERSKIT_HOME"])).read_bytes()
            (p / name).write_bytes(real[: len(real) // 3])
        else:
            (p / name).write_bytes(data)
    return apply


def avatar(data: bytes):
    """Give the persona an avatar.png (the character card's image) holding ``data``."""
    def apply(p: Path):
        (p / "personas" / "good" / "avatar.png").write_bytes(data)
    return apply


def _png_bad_crc() -> bytes:
    import struct

    sig = b"\x89PNG\r\n\x1a\n"
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + b"\0\0\0\0"  # wrong CRC
    return sig + chunk


def symlink_source(name: str, target: str):
    """Add a source that is a symlink to ``target`` (outside the persona folder)."""
    def apply(p: Path):
        folder = p / "personas" / "good"
        (folder / "sources" / name).symlink_to(target)
        f = folder / "persona.yaml"
        f.write_text(f.read_text().replace(
            "sources:\n", f"sources:\n  - {{path: sources/{name}, kind: objective, stage: early}}\n", 1))
    return apply


def chain(*fns):
    def apply(p: Path):
        for f in fns:
            f(p)
    return apply


JUNK = random.Random(8).randbytes(4096)  # fixed junk, so every run tests the same bytes
RUN = ["run", "recipe.yaml", "--run-dir", "run"]
CONSTRUCT = ["construct", "recipe.yaml", "--run-dir", "run"]
EXPORT = ["export", "recipe.yaml", "--run-dir", "run"]
VALIDATE = ["persona", "validate", "personas/good"]
INGEST_OK = {"run", "run/recipe.resolved.yaml"}  # what opening the run may write before a late check fails
NOTHING: set[str] = set()
GOOD_MANIFEST = json.dumps({"persona": {"id": "good", "name": "Good Person"},
                            "files": {"good-Q8_0.gguf": {"bytes": 4}}}).encode()

# (id, how to break the project, argv, expected fragment of the error line, paths allowed to appear)
CASES = [
    # -- personas ---------------------------------------------------------------------------
    ("persona-malformed-yaml", edit_persona("stages:\n", "stages:\n  - {id: x, label: [unclosed\n"), RUN,
     "malformed YAML", set()),
    ("persona-tab-indent", edit_persona("style: [plain, exact]", "style:\n\t- plain"), RUN, "malformed YAML", set()),
    ("persona-unknown-key", edit_persona("identity:", "nmae: typo\nidentity:"), RUN, "nmae", set()),
    ("persona-unknown-nested-key", edit_persona("label: Early years", "lable: Early years"), RUN,
     ("stages[0].label", "stages[0].lable"), set()),
    ("persona-missing-name", edit_persona("name: Good Person\n", ""), RUN, "name", set()),
    ("persona-missing-source-file", edit_persona("sources/bio.md", "sources/nope.md"), RUN, "not found", set()),
    ("persona-source-escapes-folder", edit_persona("sources/bio.md", "../../recipe.yaml"), RUN,
     "escapes the persona folder", set()),
    ("persona-absolute-source", edit_persona("sources/bio.md", "/etc/hostname"), RUN,
     "escapes the persona folder", set()),
    ("persona-undeclared-stage", edit_persona("kind: objective, stage: early", "kind: objective, stage: middle"),
     RUN, "not a declared stage", set()),
    ("persona-gold-undeclared-stage", edit_persona('still there.", stage: early', 'still there.", stage: old'), RUN,
     "not a declared stage", set()),
    ("persona-duplicate-stage", edit_persona("id: late,", "id: early,"), RUN,
     ("duplicate stage", "'late' is not a declared stage"), set()),
    ("persona-sources-without-stages", write_persona(
        "id: good\nname: G\nidentity: x\nsources:\n  - {path: sources/bio.md, kind: objective, stage: early}\n"),
     RUN, "declare at least one stage", set()),
    ("persona-empty-file", write_persona(""), RUN, "empty", set()),
    ("persona-is-a-list", write_persona("- id: good\n- name: G\n"), RUN, "mapping", set()),
    ("persona-no-sources-no-big-five", write_persona("id: good\nname: G\nidentity: x\n"), RUN, "empty persona",
     set()),
    ("persona-big-five-out-of-range", edit_persona("O: 3.5", "O: 7"), RUN, "big_five.O", set()),
    ("persona-big-five-bad-word", edit_persona("O: 3.5", "O: extreme"), RUN, "big_five.O", set()),
    ("persona-big-five-missing-trait", edit_persona(", N: 2.5", ""), RUN, "big_five.N", set()),
    ("persona-bad-id", edit_persona("id: good", "id: Good Person!"), RUN, "id", set()),
    ("persona-bad-source-kind", edit_persona("kind: subjective", "kind: gossip"), RUN, "kind", set()),
    ("persona-not-utf8", write_persona("id: good\nname: Ren\xe9e\nidentity: x\n".encode("latin-1")), RUN, "UTF-8",
     set()),
    ("persona-validate-missing-folder", None, ["persona", "validate", "personas/nobody"], "not found", set()),
    ("persona-alias-bomb", edit_persona("gold:\n", alias_bomb() + "gold:\n"), VALIDATE, "alias bomb", set()),
    ("persona-recursive-alias", edit_persona("style: [plain, exact]", "style: &s [plain, *s]"), VALIDATE,
     "refers to itself", set()),
    ("persona-too-large", edit_persona("style: [plain, exact]", "style: [" + "plain, " * 200_000 + "exact]"),
     VALIDATE, "over the", set()),
    ("persona-nested-too-deep", edit_persona("style: [plain, exact]", "style: " + "[" * 2000 + "]" * 2000),
     VALIDATE, "nested", set()),
    ("persona-huge-integer", edit_persona("O: 3.5", "O: " + "9" * 5000), VALIDATE, "cannot be read", set()),
    ("persona-list-as-key", edit_persona("style: [plain, exact]", "? [a, b]\n: c"), VALIDATE, "mapping key",
     set()),
    ("persona-unknown-and-missing", edit_persona("identity:", "idntity:"), VALIDATE,
     ("identity: field required", "rename 'idntity' to 'identity'"), set()),
    ("persona-every-problem", chain(edit_persona("label: Early years", "lable: Early years"),
                                    edit_persona("O: 3.5", "O: extreme"),
                                    edit_persona("kind: subjective, stage: late", "kind: subjective, stage: old"),
                                    edit_persona("sources/bio.md", "sources/nope.md")), VALIDATE,
     ("stages[0].label (line 6): field required", "stages[0].lable (line 6): unknown key", "big_five.O",
      "sources[1].stage (line 10): 'old' is not a declared stage", "sources[0].path (line 9): source file"),
     set()),
    ("persona-symlink-outside", symlink_source("link.md", "/etc/hostname"), VALIDATE,
     "escapes the persona folder", set()),
    ("persona-validate-fake-pdf", source("junk.pdf", JUNK[:2048]), VALIDATE, "cannot be read as a PDF", set()),
    ("persona-validate-fake-epub", source("book.epub", b"PK\x03\x04 not really a zip"), VALIDATE,
     "cannot be read as an EPUB", set()),
    ("persona-validate-binary-txt", source("junk.txt", b"\x00\x01\x02binary" * 200), VALIDATE,
     "sources/junk.txt: looks like a binary file", set()),
    ("persona-validate-all-unreadable", chain(source("junk.pdf", JUNK[:2048]), source("book.epub", b"PK\x03\x04"),
                                              source("junk.txt", b"\x00\x01" * 50)), VALIDATE,
     ("junk.txt", "book.epub", "junk.pdf"), set()),
    # -- recipes ----------------------------------------------------------------------------
    ("recipe-alias-bomb", edit_recipe("name: bad", alias_bomb() + "name: bad"), RUN, "alias bomb", set()),
    ("recipe-unknown-and-missing", edit_recipe("teacher:", "teachr:"), RUN,
     ("teacher: field required", "rename 'teachr' to 'teacher'"), set()),
    ("recipe-missing-file", None, ["run", "nope.yaml", "--run-dir", "run"], "not found", set()),
    ("recipe-empty", write_recipe(""), RUN, "empty", set()),
    ("recipe-malformed-yaml", edit_recipe("name: bad", "name: [bad"), RUN, "malformed YAML", set()),
    ("recipe-unknown-key", edit_recipe("name: bad", "name: bad\nepochs: 3"), RUN, "epochs", set()),
    ("recipe-unknown-backend", edit_recipe("backend: trl", "backend: jax"), RUN, "train", set()),
    ("recipe-unknown-teacher-kind", edit_recipe("kind: scripted", "kind: gpt5"), RUN, "teacher", set()),
    ("recipe-missing-persona", edit_recipe("personas/good", "personas/nobody"), RUN, "not found", set()),
    ("recipe-negative-steps", edit_recipe("max_steps: 2", "max_steps: -3"), RUN, "max_steps", set()),
    ("recipe-unknown-quant", edit_recipe("[Q8_0]", "[Q3_XYZ]"), RUN, "Q3_XYZ", set()),
    ("recipe-empty-quants", edit_recipe("[Q8_0]", "[]"), RUN, "quant", set()),
    ("recipe-fail-rate-out-of-range", edit_recipe("kind: scripted", "kind: scripted, fail_rate: 3"), RUN,
     "teacher", set()),
    ("recipe-unknown-lora-key", edit_recipe("max_steps: 2", "max_steps: 2, lora: {rank: 8}"), RUN, "rank",
     set()),
    ("override-without-equals", None, RUN + ["--set", "train.max_steps"], "--set", set()),
    ("override-alias-bomb", None, RUN + ["--set", "name=" + flow_bomb()], "alias bomb", set()),
    ("override-into-scalar", None, RUN + ["--set", "name.x=1"], "not a section", set()),
    ("override-wrong-type", None, RUN + ["--set", "train.max_steps=lots"], "max_steps", set()),
    ("override-unknown-field", None, RUN + ["--set", "train.epoch_count=3"], "epoch_count", set()),
    ("run-from-unknown-stage", None, RUN + ["--from", "deploy"], "deploy", set()),
    ("run-only-unknown-stage", None, RUN + ["--only", "deploy"], "deploy", set()),
    # -- sources (read by construct before any stage output) ---------------------------------
    ("source-encrypted-pdf", source("locked.pdf", lambda: _pdf(encrypt=True)), CONSTRUCT, "encrypted PDF", NOTHING),
    ("source-pdf-no-text", source("scan.pdf", _pdf), CONSTRUCT, "no text layer", NOTHING),
    ("source-fake-pdf", source("junk.pdf", JUNK[:2048]), CONSTRUCT, "PDF", NOTHING),
    ("source-binary-junk-txt", source("junk.txt", b"\x00\x01\x02binary" * 200), CONSTRUCT, "binary", NOTHING),
    ("source-empty-file", source("empty.md", b""), CONSTRUCT, "is empty", NOTHING),
    ("source-whitespace-only", source("blank.txt", b"  \n\n\t \n"), CONSTRUCT, "no readable text", NOTHING),
    ("source-not-utf8", source("latin.txt", "Caf\xe9 cr\xe8me and the bridge".encode("latin-1")), CONSTRUCT,
     "not valid UTF-8", NOTHING),
    ("source-docx", source("notes.docx", b"PK\x03\x04" + JUNK[:256]), CONSTRUCT, "unsupported format",
     NOTHING),
    ("source-fake-epub", source("book.epub", b"PK\x03\x04 not really a zip"), CONSTRUCT, "EPUB", NOTHING),
    ("source-all-unreadable-at-once", chain(source("junk.pdf", JUNK[:2048]), source("latin.txt", b"Caf\xe9")),
     CONSTRUCT, ("not valid UTF-8", "PDF"), NOTHING),
    # -- GGUFs and bundles (perskit chat) ----------------------------------------------------
    ("gguf-empty", gguf_file(b""), ["chat", "model.gguf"], "not a GGUF", set()),
    ("gguf-random-bytes", gguf_file(JUNK), ["chat", "model.gguf"], "not a GGUF", set()),
    ("gguf-header-only", gguf_file(_gguf_header_only()), ["chat", "model.gguf"], "could not load", set()),
    ("gguf-truncated", gguf_file("truncated"), ["chat", "model.gguf"], "could not load", set()),
    ("gguf-missing", None, ["chat", "missing.gguf"], "not found", set()),
    ("bundle-no-manifest", bundle(None, gguf=b"GGUF"), ["chat", "export/good"], "no manifest.json", set()),
    ("bundle-corrupt-manifest", bundle(b'{"persona": {"id": "good",', gguf=b"GGUF"), ["chat", "export/good"],
     "not valid JSON", set()),
    ("bundle-manifest-not-object", bundle(b"[1, 2, 3]"), ["chat", "export/good"], "JSON object", set()),
    ("bundle-manifest-nested-too-deep", bundle(b"[" * 100_000 + b"]" * 100_000, gguf=b"GGUF"),
     ["chat", "export/good"], "not valid JSON", set()),
    ("bundle-manifest-binary", bundle(b"\xff\xfe\x00junk"), ["chat", "export/good"], "manifest", set()),
    ("bundle-gguf-listed-but-missing", bundle(GOOD_MANIFEST), ["chat", "export/good"], "not found", set()),
    ("bundle-gguf-not-gguf", bundle(GOOD_MANIFEST, gguf=b"NOPE" * 100), ["chat", "export/good"], "not a GGUF",
     set()),
    ("bundle-unknown-quant", bundle(GOOD_MANIFEST, gguf=b"GGUF"), ["chat", "export/good", "--quant", "Q2_K"],
     "Q2_K", set()),
    ("bundle-stage-without-id", bundle(json.dumps({"stages": [{"label": "x"}]}).encode()), ["chat", "export/good"],
     "stages[0]", set()),
    ("chat-template-missing", bundle(GOOD_MANIFEST, gguf=b"GGUF"),
     ["chat", "export/good", "--template", "nope.jinja"], "template", set()),
    # -- character cards (persona avatar.png, embedded by export; checked before any work) ------
    ("card-avatar-not-png", avatar(b"\xff\xd8\xff\xe0JFIF" + JUNK[:512]), EXPORT, "not a PNG", INGEST_OK),
    ("card-avatar-truncated-png", avatar(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHD"), EXPORT, "truncated",
     INGEST_OK),
    ("card-avatar-bad-crc", avatar(_png_bad_crc()), EXPORT, "CRC", INGEST_OK),
    ("card-avatar-empty", avatar(b""), EXPORT, "not a PNG", INGEST_OK),
    # -- other verbs ------------------------------------------------------------------------
    ("init-bad-id", None, ["init", "Not An Id", "--dir", "personas"], "invalid persona id", set()),
    ("export-before-training", None, EXPORT, "adapter", INGEST_OK),
    ("eval-two-recipes", None, ["eval", "recipe.yaml", "recipe.yaml"], "exactly one recipe", set()),
]


def _tree(root: Path) -> dict[str, bytes | None]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = p.read_bytes() if p.is_file() and not p.is_symlink() else None
    return out


@pytest.fixture
def project(tmp_path) -> Path:
    p = tmp_path / "project"
    (p / "personas" / "good" / "sources").mkdir(parents=True)
    _persona(p).write_text(PERSONA)
    (p / "personas" / "good" / "sources" / "bio.md").write_text(BIO)
    (p / "personas" / "good" / "sources" / "diary.md").write_text(DIARY)
    (p / "recipe.yaml").write_text(RECIPE)
    return p


def test_the_unbroken_project_is_valid(project, tmp_path):
    """Guards the corpus: each case fails because of what it breaks, not a broken base."""
    env = {**os.environ, "PERSKIT_HOME": str(tmp_path / "home")}
    res = subprocess.run([sys.executable, "-m", "kit", "persona", "validate", "personas/good"], cwd=project,
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    from kit.spec.recipe import load_recipe

    loaded = load_recipe(project / "recipe.yaml")
    assert loaded.persona_path() == project / "personas" / "good"


@pytest.mark.parametrize("case_id,breaker,argv,fragment,allowed", CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_in_one_line(case_id, breaker, argv, fragment, allowed, project, tmp_path, perskit_home):
    if breaker is not None:
        breaker(project)
    home = tmp_path / "home"  # a fresh kit home: nothing may be cached or written there either
    home.mkdir()
    before = _tree(project)
    env = {**os.environ, "PERSKIT_HOME": str(home), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    res = subprocess.run([sys.executable, "-m", "kit", *argv], cwd=project, env=env, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=120)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in res.stderr + res.stdout, res.stderr[-3000:]
    assert res.returncode == 2, f"exit {res.returncode}\nstdout: {res.stdout[-1000:]}\nstderr: {res.stderr[-2000:]}"
    fragments = fragment if isinstance(fragment, tuple) else (fragment,)  # one line per problem, in order
    assert len(lines) == len(fragments), res.stderr
    for line, frag in zip(lines, fragments):
        assert line.startswith("perskit: error:"), line
        assert frag.lower() in line.lower(), line
    after = _tree(project)
    new = set(after) - set(before)
    assert new <= allowed, f"partial output written: {sorted(new - allowed)}"
    changed = [k for k in before if k in after and before[k] != after[k]]
    assert not changed, f"files changed: {changed}"
    assert not any(home.iterdir()), f"kit home written: {list(home.rglob('*'))}"


def test_corpus_size():
    assert len(CASES) >= 30
    assert len({c[0] for c in CASES}) == len(CASES)
    kinds = {c[0].split("-")[0] for c in CASES}
    assert {"persona", "recipe", "source", "gguf", "bundle", "card"} <= kinds
