"""Property-based fuzzing of the spec loaders (persona.yaml, recipe YAML, card JSON).

Personas and recipes are shared between people, so every file is untrusted. Whatever the
bytes, loading must end in a valid result or a KitError whose every line is one line, with
no other exception, in bounded time (hypothesis ``deadline``) and bounded memory
(``tracemalloc`` peak per case). Cases are derandomized, so CI runs the same ones every
time; ``PERSKIT_FUZZ_RANDOM=1 PERSKIT_FUZZ_EXAMPLES=2000`` explores new ones locally.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import tracemalloc
from datetime import timedelta
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="the fuzz suite needs hypothesis (pip install hypothesis)")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from kit.errors import KitError  # noqa: E402

EXAMPLES = int(os.environ.get("PERSKIT_FUZZ_EXAMPLES", "60"))
# no example database and no explain phase: a failing run writes nothing into the repo
FUZZ = settings(max_examples=EXAMPLES, deadline=timedelta(seconds=5), database=None,
                derandomize=os.environ.get("PERSKIT_FUZZ_RANDOM") != "1",
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PEAK_BYTES = 64 << 20  # a spec is at most 1 MiB; nothing may balloon past this while loading it

PERSONA = {
    "id": "good", "name": "Good Person", "identity": "A retired bridge engineer.", "style": ["plain"],
    "stages": [{"id": "early", "label": "Early", "period": "1950-1960"},
               {"id": "late", "label": "Late", "period": "1980-1990"}],
    "sources": [{"path": "sources/bio.md", "kind": "objective", "stage": "early"}],
    "opinions": [{"topic": "bridges", "stance": "Build them to last."}],
    "big_five": {"O": 3.5, "C": "high", "E": 2, "A": 3, "N": "low"},
    "gold": [{"q": "Who are you?", "a": "An engineer.", "stage": "early", "type": "ordinary"}],
}
RECIPE = {
    "name": "fuzz", "persona": "personas/good", "teacher": {"kind": "scripted"},
    "construct": {"max_passages": 2}, "train": {"backend": "trl", "model": "tiny-llama-spm", "max_steps": 2},
    "export": {"quants": ["Q8_0"]}, "chat": {"temperature": 0.7},
}
FIELD_NAMES = sorted({k for d in (PERSONA, RECIPE, PERSONA["stages"][0], PERSONA["sources"][0],
                                  PERSONA["gold"][0], PERSONA["big_five"], RECIPE["train"]) for k in d})

# -- strategies --------------------------------------------------------------------------------
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
# long but under the size cap (test_oversized_and_near_limit_specs covers the cap itself)
huge_text = st.builds(lambda c, n: c * n, st.sampled_from(["x", "é", "\u2028", "🙂", "\n", "'"]),
                      st.integers(1000, 20_000))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(10 ** 30), 10 ** 30), st.floats(), text, text, text,
                    huge_text)
keys = st.one_of(st.sampled_from(FIELD_NAMES), text, st.integers(-5, 5), st.booleans())
values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=6) |
                      st.dictionaries(keys, kids, max_size=6), max_leaves=25)
# raw YAML pieces no dump would write: anchors, aliases, merges, tags, odd scalars
TOKENS = ["&a ", "*a", "&b ", "*b", "<<: ", "[", "]", "{", "}", ": ", "- ", "\n", "  ", "? ", ", ", "!!str ",
          "!!python/object/apply:os.system ", "!!binary ", "!!set ", "!!omap ", "'", '"', "#", "|\n", ">\n",
          "---\n", "...\n", "%YAML 1.1\n", "2001-13-45", "9" * 5000, "1e999", ".nan", "~", "\t", "\x00",
          "\ufeff", "identity", "stages", "sources", "id", "x"]
raw_yaml = st.lists(st.sampled_from(TOKENS) | text, max_size=60).map("".join)


# fields whose text has rules (ids, choices, paths): respelling them would only test refusals
RULED = {"id", "kind", "stage", "type", "path", "backend", "model", "persona", "quants", "C", "N"}


@st.composite
def respelled(draw, base: dict):
    """``base`` with free-text fields rewritten as random unicode, some of it long: mostly
    *valid* documents, so the fuzz also walks the success path with odd text."""
    def walk(node, key=None):
        if isinstance(node, dict):
            return {k: walk(v, k) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, key) for v in node]
        if isinstance(node, str) and key not in RULED and draw(st.booleans()):
            return draw(st.one_of(*[text.filter(str.strip)] * 7, huge_text))
        return node
    return _dump(walk(base))


def _dump(value) -> str:
    import yaml

    return yaml.safe_dump(value, allow_unicode=True, sort_keys=False)


@st.composite
def mutated(draw, base: dict):
    """``base`` with a few fields replaced, deleted or added: near-valid documents reach
    the cross-field checks and source-path rules, not just the top-level type check."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        node, path = doc, []
        while isinstance(node, (dict, list)) and node and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(node, key=str) if isinstance(node, dict) else range(len(node))))
            path.append((node, key))
            node = node[key]
        if not path:
            doc[draw(keys)] = draw(values)
            continue
        parent, key = path[-1]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[key] = draw(values)
        elif action == "delete":
            del parent[key]
        elif isinstance(parent, dict):
            parent[draw(keys)] = draw(values)
        else:
            parent.append(draw(values))
    return _dump(doc)


@st.composite
def alias_programs(draw):
    """Layers of anchors, each aliasing the layer below ``width`` times (as lists or as
    merge keys), placed beside a valid persona: some harmless, some bombs."""
    levels, width, merge = draw(st.integers(1, 10)), draw(st.integers(1, 12)), draw(st.booleans())
    lines, prev = ["l0: &l0 {x: lol}" if merge else 'l0: &l0 ["lol"]'], "l0"
    for n in range(1, levels + 1):
        body = ", ".join([f"*{prev}"] * width)
        lines.append(f"l{n}: &l{n} {{<<: [{body}]}}" if merge else f"l{n}: &l{n} [{body}]")
        prev = f"l{n}"
    target = draw(st.sampled_from(["style", "identity", "gold", "extra_key"]))
    doc = _dump({k: v for k, v in PERSONA.items() if k != target})
    # nodes the aliases add: an alias is its anchor's node, so each layer is 1 (or 3 with
    # a merge key) new nodes, but expands to ``width`` copies of the layer below
    own = 3 if merge else 1  # {<<: [...]} is a mapping, its '<<' key and a list
    sizes = [3 if merge else 2]  # {x: lol} or ["lol"]
    for _ in range(levels):
        sizes.append(own + width * sizes[-1])
    added = sum(sizes) + sizes[-1] - (sizes[0] + own * levels)
    return doc + "\n".join(lines) + f"\n{target}: *{prev}\n", added


# -- the property --------------------------------------------------------------------------------
def _bounded(fn, *, peak_limit: int | None = PEAK_BYTES):
    """Run ``fn``; return its KitError (or None) after checking the one-line and memory rules."""
    if peak_limit is None:
        return _one_line(_run(fn))
    tracemalloc.start()
    try:
        err = _run(fn)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < peak_limit, f"loading peaked at {peak / 2**20:.0f} MiB"
    return _one_line(err)


def _run(fn) -> KitError | None:
    try:
        fn()
    except KitError as exc:
        return exc
    return None


KINDS = ("alias", "malformed YAML", "not UTF-8", "over the", "unknown key", "required", "declared stage",
         "source file", "escapes")


def _one_line(err: KitError | None) -> KitError | None:
    if err is not None:
        for line in err.lines():
            assert line.strip() and len(line.splitlines()) == 1, repr(line[:300])
    # `pytest --hypothesis-show-statistics` shows how the cases ended (valid, or which refusal)
    text = str(err) if err is not None else ""
    if hypothesis.currently_in_test_context():
        hypothesis.event("valid" if err is None else
                         "refused: " + next((k for k in KINDS if k in text), "other problem"))
    return err


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    import kit.cli  # noqa: F401 - imported once here, not inside the first case's deadline
    import kit.construct.ingest  # noqa: F401
    import kit.spec.recipe  # noqa: F401

    root = tmp_path_factory.mktemp("fuzz-project")
    (root / "personas" / "good" / "sources").mkdir(parents=True)
    (root / "personas" / "good" / "sources" / "bio.md").write_text("Good Person built bridges for forty years.\n")
    (root / "personas" / "good" / "persona.yaml").write_text(_dump(PERSONA))
    return root


def _persona_case(project: Path, body: str | bytes, **bounds) -> KitError | None:
    from kit.construct.ingest import open_source
    from kit.spec.persona import load_persona

    folder = project / "personas" / "fuzz"
    (folder / "sources").mkdir(parents=True, exist_ok=True)
    (folder / "sources" / "bio.md").write_text("Good Person built bridges for forty years.\n")
    spec = folder / "persona.yaml"
    spec.write_bytes(body if isinstance(body, bytes) else body.encode("utf-8"))
    return _bounded(lambda: load_persona(folder, read=open_source), **bounds)


def _recipe_case(project: Path, body: str) -> KitError | None:
    from kit.spec.recipe import load_recipe

    path = project / "fuzz.yaml"
    path.write_text(body, encoding="utf-8")
    return _bounded(lambda: load_recipe(path))


@FUZZ
@given(doc=st.one_of(mutated(PERSONA), respelled(PERSONA), values.map(_dump), raw_yaml))
def test_persona_yaml_fuzz(project, doc):
    _persona_case(project, doc)


@FUZZ
@given(doc=st.one_of(mutated(RECIPE), respelled(RECIPE), respelled(RECIPE), values.map(_dump), raw_yaml))
def test_recipe_yaml_fuzz(project, doc):
    _recipe_case(project, doc)


@FUZZ
@given(program=alias_programs())
def test_alias_programs_are_bounded(project, program):
    from kit.spec.yamlio import MAX_ALIAS_EXPANSION

    text, added = program
    err = _persona_case(project, text)
    assert err is not None  # the anchors sit under keys a persona does not have
    assert ("alias bomb" in str(err)) == (added > MAX_ALIAS_EXPANSION), (added, str(err)[:300])


@FUZZ
@given(data=st.binary(max_size=2000))
def test_persona_random_bytes(project, data):
    _persona_case(project, data)


@FUZZ
@given(doc=st.one_of(mutated(PERSONA), respelled(PERSONA)))
def test_persona_cli_exit_codes(project, doc):
    """The CLI path in-process: exit 0 with an ok line, or exit 2 with only error lines."""
    from kit.cli import main

    folder = project / "personas" / "fuzz"
    (folder / "sources").mkdir(parents=True, exist_ok=True)
    (folder / "sources" / "bio.md").write_text("Good Person built bridges.\n")
    (folder / "persona.yaml").write_text(doc, encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["persona", "validate", str(folder)])
    assert rc in (0, 2), err.getvalue()
    lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
    assert (rc == 0) == (not lines), err.getvalue()
    assert all(ln.startswith("perskit: error: ") for ln in lines), lines


@FUZZ
@given(value=values, depth=st.integers(0, 3000))
def test_card_json_fuzz(value, depth):
    import json

    from kit.spec.yamlio import load_json_spec

    raw = ("[" * depth + json.dumps(value, allow_nan=False) + "]" * depth).encode() if _finite(value) else b"["
    _bounded(lambda: load_json_spec(raw, where="card.json", what="character card"))
    _bounded(lambda: load_json_spec(raw[: len(raw) // 2], where="card.json", what="character card"))


def _finite(value) -> bool:
    import math

    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def test_oversized_and_near_limit_specs(project):
    """Over the cap: refused by size before parsing. Just under it: parsed in bounded time."""
    import time

    from kit.spec.yamlio import MAX_SPEC_BYTES

    err = _persona_case(project, "style: [" + "plain, " * (MAX_SPEC_BYTES // 7 + 1) + "x]\n")
    assert err is not None and "over the" in str(err), err
    near = _dump(PERSONA) + "boundaries: [" + "ok, " * ((MAX_SPEC_BYTES - 2000) // 4) + "x]\n"
    assert len(near.encode()) < MAX_SPEC_BYTES
    start = time.monotonic()
    assert _persona_case(project, near, peak_limit=None) is None  # tracemalloc would triple the time
    assert time.monotonic() - start < 30


def test_card_png_with_a_json_bomb_is_one_line():
    """A character card PNG whose embedded JSON nests 100,000 deep: one KitError, no RecursionError."""
    import base64

    from kit.export import card as cards

    png = cards.embed_cards(cards.solid_png("x", 4), {})
    payload = base64.b64encode(b"[" * 100_000 + b"]" * 100_000)
    png = png[:-12] + cards._chunk(b"tEXt", b"chara\0" + payload) + png[-12:]
    with pytest.raises(KitError, match="not base64 JSON"):
        cards.read_cards(png)


@pytest.mark.parametrize("verb", ["validate", "run"])
def test_alias_bomb_under_a_memory_cap(tmp_path, verb):
    """The issue's bomb (9^8 nodes from under 1 KB) under a 1 GiB address-space cap: before the
    fix this died with a MemoryError traceback in the line mapper; now one line, exit 2, fast."""
    import resource
    import subprocess
    import sys
    import time

    from spec_helpers import alias_bomb

    bomb = alias_bomb()
    assert len(bomb) < 1024
    (tmp_path / "personas" / "good").mkdir(parents=True)
    persona, recipe = tmp_path / "personas" / "good" / "persona.yaml", tmp_path / "recipe.yaml"
    persona.write_text((bomb if verb == "validate" else "") + _dump(PERSONA))
    recipe.write_text((bomb if verb == "run" else "") + _dump(RECIPE))
    argv, spec = ((["persona", "validate", "personas/good"], "personas/good/persona.yaml") if verb == "validate"
                  else (["run", "recipe.yaml", "--run-dir", "run"], "recipe.yaml"))

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    env = {**os.environ, "PERSKIT_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    start = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "kit", *argv], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=120, preexec_fn=cap)
    elapsed = time.monotonic() - start
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2 and len(lines) == 1, res.stderr[-2000:]
    assert "alias bomb" in lines[0] and spec in lines[0], lines[0]
    assert elapsed < 30, f"took {elapsed:.1f} s"
