"""A deterministic scripted teacher, for unit tests only (never a stand-in for a model).

It answers by the requested schema's keys with text built from the prompt's own words,
so outputs differ per prompt, are stable across runs, and exercise every code path.
``fail_rate`` turns a hash-chosen share of attempts into junk to test retries/faults.
"""

from __future__ import annotations

import hashlib
import re
import time

from kit.teachers.base import BaseTeacher

_STOP = set("the a an and or of to in on at for with is was were be by it this that as from what your you "
            "are about ask asks write question answer persona json user".split())


class ScriptedTeacher(BaseTeacher):
    kind = "scripted"

    def __init__(self, cfg, cache_dir):
        super().__init__(cache_dir)
        self.cfg = cfg
        self.retries = 2
        self.backoff_s = 0.0

    def identity(self) -> dict:
        return {"kind": "scripted", "seed": self.cfg.seed, "fail_rate": self.cfg.fail_rate}

    def _call(self, messages, schema, attempt):
        import json

        if self.cfg.delay_s:
            time.sleep(self.cfg.delay_s)
        text = messages[-1]["content"]
        h = hashlib.sha256(f"{self.cfg.seed}|{text}".encode()).digest()
        if self.cfg.fail_rate and (hashlib.sha256(h + bytes([attempt])).digest()[0] / 255) < self.cfg.fail_rate:
            return "sorry, I cannot produce JSON today"
        words = [w for w in re.findall(r"[A-Za-z][a-z]{3,}", text) if w.lower() not in _STOP]
        pick = [words[(h[i] * 7 + i * 13) % len(words)] for i in range(8)] if words else ["thing"] * 8
        props = schema.get("properties", {})
        out = {}
        if "question" in props:
            out["question"] = f"What do you remember about {pick[0].lower()} and {pick[1].lower()} back then?"
        if "analysis" in props:
            out["analysis"] = f"At this stage I know about {pick[2].lower()}; I feel calm; the premise is checked."
        if "response" in props:
            out["response"] = (f"Well, {pick[3].lower()} mattered to me. I think of {pick[4].lower()}, "
                               f"{pick[5].lower()} and {pick[6].lower()} when I look back on it, "
                               f"and {pick[7].lower()} still makes me smile.")
        if "consistent" in props:
            out["consistent"] = h[5] % 10 != 0
            out["reason"] = "in voice and in period" if out["consistent"] else "breaks character"
        return json.dumps(out)
