"""SillyTavern / Tavern character cards: spec V2 JSON, V3 JSON, and a PNG carrying both.

A card PNG is an ordinary image with the card JSON, base64-encoded, in ``tEXt``
chunks: ``chara`` (V2, read by every Tavern-style front end) and ``ccv3`` (V3).
The PNG reader/writer is plain ``zlib`` + ``struct`` (no imaging library): an
avatar image from the persona folder (``avatar.png``) is reused when present, else
a small solid-colour square is drawn.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import time
import zlib
from pathlib import Path

from kit.errors import KitError
from kit.export.lorebook import book_problem, character_book

PNG_SIG = b"\x89PNG\r\n\x1a\n"
CARD_KEYS = ("chara", "ccv3")
V2_FIELDS = {"name": str, "description": str, "personality": str, "scenario": str, "first_mes": str,
             "mes_example": str, "creator_notes": str, "system_prompt": str, "post_history_instructions": str,
             "alternate_greetings": list, "tags": list, "creator": str, "character_version": str,
             "extensions": dict}


def stage_gold(spec, stage_id: str) -> list:
    """The persona's gold examples for one stage (an example without a stage is the last stage's)."""
    last = spec.stages[-1].id
    return [g for g in spec.gold if (g.stage or last) == stage_id]


def greetings(spec, st) -> list[str]:
    """Opening messages in the persona's own voice: the stage's gold answers (plain ones and
    opinions; refusals of leading questions make poor openers), each under a scene line."""
    scene = f"*{spec.name} — {st.label}, {st.period}.*\n\n"
    answers = [g.a.strip() for g in stage_gold(spec, st.id) if g.type in ("ordinary", "opinion")]
    return [scene + a for a in answers[:4]] or [scene + f"Hello. I'm {spec.name}."]


def build_card_v2(persona, *, stage_id: str | None, model_file: str, extensions: dict | None = None,
                  style: dict | None = None, passages: list[dict] | None = None) -> dict:
    """A spec V2 card for one life stage: identity, style, Big Five, that stage's gold answers as
    first message, alternate greetings and example dialogue, and its system prompt.
    ``style`` is the recipe's ``construct.prompt_style()``: the system prompt the model was trained on."""
    style = style or {}
    spec = persona.spec
    st = spec.stage(stage_id)
    personality = "; ".join(spec.style)
    if spec.big_five is not None:
        scores = spec.big_five.scores()
        personality = (personality + ". " if personality else "") + "Big Five (1-5): " + ", ".join(
            f"{k}={v:.1f}" for k, v in scores.items())
    gold = stage_gold(spec, st.id) or list(spec.gold)
    examples = "".join(f"<START>\n{{{{user}}}}: {g.q}\n{{{{char}}}}: {g.a}\n" for g in gold[:4])
    greet = greetings(spec, st)
    data = {
        "name": spec.name,
        "description": spec.identity.strip(),
        "personality": personality,
        "scenario": f"{spec.name}, {st.label} ({st.period}). {st.knows}".strip(),
        "first_mes": greet[0],
        "mes_example": examples,
        "creator_notes": f"Made with perskit: {spec.name} as {st.label} ({st.period}). Model: {model_file} (its "
                         f"chat template is inside the GGUF); with `perskit serve` use model id '{spec.id}:{st.id}'.",
        "system_prompt": spec.system_prompt(st.id, **style),
        "post_history_instructions": "",
        "alternate_greetings": greet[1:],
        "tags": ["perskit", "persona", st.id],
        "creator": "perskit",
        "character_version": "1.0",
        "extensions": {"perskit": {"persona_id": spec.id, "stage": st.id, "model_id": f"{spec.id}:{st.id}",
                                   "stage_prompts": {s.id: spec.system_prompt(s.id, **style) for s in spec.stages},
                                   **(extensions or {})}},
    }
    book = character_book(spec, st.id, passages or [])
    if book is not None:  # the stage's own materials as a lorebook (its stage and earlier ones only)
        data["character_book"] = book
    return {"spec": "chara_card_v2", "spec_version": "2.0", "data": data}


def build_card_v3(v2: dict) -> dict:
    """V3 = V2 data plus the V3-only fields (dates, group greetings, assets)."""
    now = int(time.time())
    data = dict(v2["data"], group_only_greetings=[], creation_date=now, modification_date=now,
                assets=[{"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"}])
    return {"spec": "chara_card_v3", "spec_version": "3.0", "data": data}


def validate_card(card: dict) -> None:
    """Check a V2/V3 card against the spec's required fields and types (KitError on failure)."""
    spec = card.get("spec")
    expected = {"chara_card_v2": "2.0", "chara_card_v3": "3.0"}
    if spec not in expected or card.get("spec_version") != expected[spec]:
        raise KitError(f"bad card spec {spec!r}/{card.get('spec_version')!r}", where="character card",
                       fix="spec must be chara_card_v2/2.0 or chara_card_v3/3.0")
    data = card.get("data")
    if not isinstance(data, dict):
        raise KitError("card has no data object", where="character card", fix="rebuild the card")
    fields = dict(V2_FIELDS)
    if spec == "chara_card_v3":
        fields.update(group_only_greetings=list, creation_date=int, modification_date=int)
    for key, typ in fields.items():
        if not isinstance(data.get(key), typ):
            raise KitError(f"field data.{key} must be {typ.__name__}", where="character card", fix="rebuild the card")
    for key in ("alternate_greetings", "tags") + (("group_only_greetings",) if spec == "chara_card_v3" else ()):
        if not all(isinstance(x, str) for x in data[key]):
            raise KitError(f"data.{key} must be a list of strings", where="character card", fix="rebuild the card")
    if not data["name"].strip():
        raise KitError("data.name is empty", where="character card", fix="set the persona name")
    if "character_book" in data and (why := book_problem(data["character_book"])):
        raise KitError(why, where="character card", fix="rebuild the card")


# -- PNG -------------------------------------------------------------------------------------
def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def read_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """All (type, payload) chunks of a PNG, CRC-checked."""
    if not data.startswith(PNG_SIG):
        raise KitError("not a PNG file", where="card PNG", fix="use a .png image")
    chunks, pos = [], len(PNG_SIG)
    while pos < len(data):
        if pos + 8 > len(data):
            raise KitError("truncated PNG chunk header", where="card PNG", fix="re-export the card")
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        payload = data[pos + 8:pos + 8 + length]
        crc_raw = data[pos + 8 + length:pos + 12 + length]
        if len(payload) != length or len(crc_raw) != 4:
            raise KitError("truncated PNG chunk", where="card PNG", fix="re-export the card")
        if struct.unpack(">I", crc_raw)[0] != zlib.crc32(kind + payload):
            raise KitError(f"bad CRC in PNG chunk {kind!r}", where="card PNG", fix="re-export the card")
        chunks.append((kind, payload))
        pos += 12 + length
        if kind == b"IEND":
            break
    if not chunks or chunks[0][0] != b"IHDR" or chunks[-1][0] != b"IEND":
        raise KitError("PNG lacks IHDR/IEND", where="card PNG", fix="re-export the card")
    return chunks


def solid_png(seed: str, size: int = 256) -> bytes:
    """A plain RGB square whose colour comes from ``seed`` (a stand-in avatar)."""
    r, g, b = hashlib.sha256(seed.encode()).digest()[:3]
    row = b"\x00" + bytes((r // 2 + 64, g // 2 + 64, b // 2 + 64)) * size  # filter byte 0 + pixels
    ihdr = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return PNG_SIG + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(row * size, 9)) + _chunk(b"IEND", b"")


def embed_cards(png: bytes, cards: dict[str, dict]) -> bytes:
    """Return ``png`` with ``cards`` ({'chara': v2, 'ccv3': v3}) as base64 tEXt chunks.

    Old card chunks are dropped first, so re-embedding never leaves two cards.
    """
    chunks = [c for c in read_chunks(png) if not (c[0] == b"tEXt" and c[1].split(b"\0", 1)[0] in
                                                 {k.encode() for k in CARD_KEYS})]
    text = [_chunk(b"tEXt", key.encode("latin-1") + b"\0" +
                   base64.b64encode(json.dumps(card, ensure_ascii=False).encode("utf-8")))
            for key, card in cards.items()]
    body = b"".join(_chunk(k, p) for k, p in chunks[:-1])
    return PNG_SIG + body + b"".join(text) + _chunk(b"IEND", b"")


def read_cards(png: bytes) -> dict[str, dict]:
    """The cards embedded in a PNG, by chunk keyword."""
    out = {}
    for kind, payload in read_chunks(png):
        if kind != b"tEXt" or b"\0" not in payload:
            continue
        key, value = payload.split(b"\0", 1)
        if key.decode("latin-1") in CARD_KEYS:
            from kit.spec.yamlio import load_json_spec  # shared cards are untrusted: bounded parse

            try:
                out[key.decode("latin-1")] = load_json_spec(base64.b64decode(value, validate=True),
                                                            where="card PNG", what="card")
            except (ValueError, KitError):  # too large or too deep counts as not a card, too
                raise KitError(f"the '{key.decode()}' chunk is not base64 JSON", where="card PNG",
                               fix="re-export the card") from None
    return out


def card_png(persona_root: Path, seed: str, cards: dict[str, dict]) -> bytes:
    """The card PNG: the persona's avatar.png when it has one, else a solid square."""
    avatar = Path(persona_root) / "avatar.png"
    base = avatar.read_bytes() if avatar.is_file() else solid_png(seed)
    return embed_cards(base, cards)
