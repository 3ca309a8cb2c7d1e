"""Retrieval at chat time: lookup latency per turn and recall@K, bm25 against MiniLM.

    .venv/bin/python bench/retrieval_lookup.py [--persona personas/booker-washington] [--k 4]

Recall on two query sets, a hit when the passage holding the answer is among the top K of the
query's own stage bound:
- "mc": the persona's multiple-choice knowledge items (kit/eval/mc.py) asked as their reworded
  question. These share most words with the sentence they were cut from, which favours bm25.
- "gold": the persona's hand-written gold questions, asked as a person asked them; the holder is
  the source passage the gold answer quotes most (at least 3 shared 4-word runs; gold answers
  that quote nothing are left out). The fairer test of chat questions.
Latency: the query to passages only (not the longer prompt), per turn, median and 95th
percentile over every query, after the index is built (a bundle loads it once).
"""

from __future__ import annotations

import argparse
import re
import statistics
import time

from kit.construct.ingest import ingest_persona
from kit.eval import mc
from kit.retrieval import Retriever
from kit.spec.persona import load_persona


def run(persona: str, k: int, n: int) -> list[dict]:
    lp = load_persona(persona)
    passages = ingest_persona(lp, 180)
    queries = {"mc": _mc_queries(lp, passages, n), "gold": _gold_queries(lp, passages)}
    rows = []
    for mode in ("bm25", "embed"):
        t0 = time.perf_counter()
        r = Retriever(passages, mode)
        r.top_k("warm up", k, 99)  # builds the passage vectors (a bundle ships them)
        build = time.perf_counter() - t0
        for name, qs in queries.items():
            hits, ms = 0, []
            for q, stage, holder in qs:
                t = time.perf_counter()
                got = r.top_k(q, k, lp.spec.stage_index(stage))
                ms.append((time.perf_counter() - t) * 1000)
                hits += holder in {p["id"] for p in got}
            ms.sort()
            rows.append({"mode": mode, "queries": name, "passages": len(passages), "items": len(qs), "k": k,
                         "recall": hits / max(1, len(qs)), "median_ms": statistics.median(ms),
                         "p95_ms": ms[int(0.95 * (len(ms) - 1))], "index_build_s": build})
    return rows


def _mc_queries(lp, passages, n) -> list[tuple[str, str, str]]:
    items = mc.build_items(passages, lp.spec.name, n, 0)
    return [(it.extractable()[0], it.stage,
             next(p["id"] for p in passages if it.sentence in " ".join(p["text"].split()))) for it in items]


def _gold_queries(lp, passages) -> list[tuple[str, str, str]]:
    def grams(text: str) -> set[tuple[str, ...]]:
        w = re.findall(r"[a-z0-9']+", text.lower())
        return {tuple(w[i:i + 4]) for i in range(len(w) - 3)}

    bags = [(p["id"], grams(p["text"])) for p in passages]
    out = []
    for g in lp.spec.gold:
        mine = grams(g.a)
        pid, shared = max(((pid, len(mine & bag)) for pid, bag in bags), key=lambda x: x[1])
        if shared >= 3:  # the answer quotes this passage
            out.append((g.q, g.stage or lp.spec.stages[-1].id, pid))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persona", default="personas/booker-washington")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--items", type=int, default=120)
    a = ap.parse_args()
    print("| retriever | queries | passages | items | K | recall@K | lookup median ms | p95 ms | index build s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in run(a.persona, a.k, a.items):
        print(f"| {r['mode']} | {r['queries']} | {r['passages']} | {r['items']} | {r['k']} | {r['recall']:.2f} | "
              f"{r['median_ms']:.1f} | {r['p95_ms']:.1f} | {r['index_build_s']:.1f} |")


if __name__ == "__main__":
    main()
