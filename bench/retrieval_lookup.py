"""Retrieval at chat time: lookup latency per turn and recall@K, bm25 against MiniLM.

    .venv/bin/python bench/retrieval_lookup.py [--persona personas/booker-washington] [--k 4]

Recall: the persona's multiple-choice knowledge items (kit/eval/mc.py) asked as their reworded
question; a hit when the passage holding the answer sentence is among the top K of the item's
own stage bound. Latency: the query to passages only (not the longer prompt), per turn, median
and 95th percentile over every item, after the index is built (a bundle loads it once).
"""

from __future__ import annotations

import argparse
import statistics
import time

from kit.construct.ingest import ingest_persona
from kit.eval import mc
from kit.retrieval import Retriever
from kit.spec.persona import load_persona


def run(persona: str, k: int, n: int) -> list[dict]:
    lp = load_persona(persona)
    passages = ingest_persona(lp, 180)
    items = mc.build_items(passages, lp.spec.name, n, 0)
    holder = {it.iid: next(p["id"] for p in passages if it.sentence in " ".join(p["text"].split())) for it in items}
    rows = []
    for mode in ("bm25", "embed"):
        t0 = time.perf_counter()
        r = Retriever(passages, mode)
        r.top_k("warm up", k, 99)  # builds the passage vectors (a bundle ships them)
        build = time.perf_counter() - t0
        hits, ms = 0, []
        for it in items:
            q, _ = it.extractable()
            t = time.perf_counter()
            got = r.top_k(q, k, lp.spec.stage_index(it.stage))
            ms.append((time.perf_counter() - t) * 1000)
            hits += holder[it.iid] in {p["id"] for p in got}
        ms.sort()
        rows.append({"mode": mode, "passages": len(passages), "items": len(items), "k": k,
                     "recall": hits / len(items), "median_ms": statistics.median(ms),
                     "p95_ms": ms[int(0.95 * (len(ms) - 1))], "index_build_s": build})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persona", default="personas/booker-washington")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--items", type=int, default=120)
    a = ap.parse_args()
    print("| retriever | passages | items | K | recall@K | lookup median ms | p95 ms | index build s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in run(a.persona, a.k, a.items):
        print(f"| {r['mode']} | {r['passages']} | {r['items']} | {r['k']} | {r['recall']:.2f} | "
              f"{r['median_ms']:.1f} | {r['p95_ms']:.1f} | {r['index_build_s']:.1f} |")


if __name__ == "__main__":
    main()
