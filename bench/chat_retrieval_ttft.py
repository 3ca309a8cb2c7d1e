"""Time to first token with chat-time retrieval (``--retrieve K``) against without, one bundle, one run.

    OMP_NUM_THREADS=2 .venv/bin/python bench/chat_retrieval_ttft.py --threads 2      # export/ada-lin, its gold questions, K=4
    .venv/bin/python bench/chat_retrieval_ttft.py --bundle export/ada-lin --n 12 --k 4 --threads 2

Each prompt is one of the persona's gold questions, asked at its own stage (the bundle's default
stage when it has no such stage), the way ``perskit chat BUNDLE --prompt Q`` asks it: the bundle's
GGUF through LlamaCppEngine, the prompt built by ``kit.chat.session.turn_messages`` (what the TUI
and ``--prompt`` use: lookup, fitting the passages into 40% of n_ctx, the stage bound), the
bundle's sampling. Each prompt runs with and without retrieval back to back, the order flipping
every prompt, with the KV cache reset before each run so prompt processing is cold for both (as
in a fresh ``--prompt`` process; in the TUI the changed system prompt also breaks llama.cpp's
prefix cache every turn). TTFT is measured from before the prompt is built (so it includes the
lookup) to the first streamed piece. The lookup alone is ``Lore.last_ms``. One warm-up of each
side first: the first lookup loads MiniLM in embed mode, reported as ``first_lookup_ms``.
Writes bench/results/chat_retrieval_ttft.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pick_prompts(persona_dir: Path, stage_ids: list[str], default_stage: str, n: int) -> list[tuple[str, str]]:
    """(question, stage id) for ``n`` gold questions spread over the list (all stages, all types)."""
    from kit.spec.persona import load_persona

    gold = load_persona(persona_dir).spec.gold
    if not gold:
        raise SystemExit(f"{persona_dir} has no gold questions to ask")
    n = min(n, len(gold)) if n > 0 else len(gold)
    picked = [gold[i * len(gold) // n] for i in range(n)]
    last = stage_ids[-1]
    return [(g.q, (g.stage or last) if (g.stage or last) in stage_ids else default_stage) for g in picked]


def one_run(engine, stage, question: str, lore, params) -> dict:
    """One cold ``--prompt``-style request; stops at the first streamed piece."""
    from kit.chat.context import token_counter
    from kit.chat.session import turn_messages

    engine.llm.reset()  # cold prompt processing: no prefix left over from the other side's run
    t0 = time.perf_counter()
    messages, used = turn_messages(stage.system_prompt, [{"role": "user", "content": question}], stage.id,
                                   lore, engine.n_ctx, token_counter(engine))
    built = time.perf_counter()
    gen = engine.stream(messages, params)
    try:
        first = next(gen, None)
        ttft = time.perf_counter() - t0
    finally:
        gen.close()
    return {"ttft_s": round(ttft, 4), "build_ms": round((built - t0) * 1000, 2),
            "lookup_ms": round(lore.last_ms, 2) if lore is not None else None,
            "prompt_tokens": engine.last_usage.get("prompt_tokens"), "first_piece": first,
            "passages": [p["id"] for p in used] if used is not None else None}


def p90(vals: list[float]) -> float:
    s = sorted(vals)
    return s[max(0, math.ceil(0.9 * len(s)) - 1)]


def spread(vals: list[float], nd: int = 4) -> dict:
    return {"median": round(statistics.median(vals), nd), "p90": round(p90(vals), nd)}


def summarize(rows: list[dict]) -> dict:
    on = [r["with"] for r in rows]
    off = [r["without"] for r in rows]
    ttft_on, ttft_off = [r["ttft_s"] for r in on], [r["ttft_s"] for r in off]
    extra = [a["prompt_tokens"] - b["prompt_tokens"] for a, b in zip(on, off)]
    return {
        "without": {"ttft_s": spread(ttft_off), "prompt_tokens": spread([r["prompt_tokens"] for r in off], 1)},
        "with": {"ttft_s": spread(ttft_on), "prompt_tokens": spread([r["prompt_tokens"] for r in on], 1),
                 "passages_used": spread([len(r["passages"]) for r in on], 1)},
        # The box may be shared: the per-prompt ratio (both runs back to back) is the steadier figure.
        "ratio_of_medians": round(statistics.median(ttft_on) / statistics.median(ttft_off), 3),
        "ratio_paired_median": round(statistics.median(a / b for a, b in zip(ttft_on, ttft_off)), 3),
        "extra_prompt_tokens": {**spread(extra, 1), "max": max(extra)},
        "lookup_ms": spread([r["lookup_ms"] for r in on], 2),
        "build_ms_with": spread([r["build_ms"] for r in on], 2),
        "build_ms_without": spread([r["build_ms"] for r in off], 2),
    }


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default=str(ROOT / "export" / "ada-lin"), help="an exported bundle with index/")
    ap.add_argument("--persona", default=None, help="persona folder for the gold questions "
                                                    "(default: personas/<the bundle's persona id>)")
    ap.add_argument("--n", type=int, default=0, help="prompts to ask (0 = every gold question)")
    ap.add_argument("--k", type=int, default=4, help="passages a turn, as --retrieve K")
    ap.add_argument("--n-ctx", type=int, default=None, help="context window (default: the bundle's, as perskit chat)")
    ap.add_argument("--max-tokens", type=int, default=16, help="reply cap (only the first piece is waited for)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "chat_retrieval_ttft.json"))
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    import llama_cpp

    from kit.chat.lore import Lore
    from kit.commands.chat import open_persona
    from kit.rundir import atomic_write_json

    b, engine = open_persona(args.bundle, quant=None, system=None, template=None, lora=None, n_ctx=args.n_ctx,
                             threads=args.threads)
    lore = Lore.for_bundle(b, args.k)
    if lore is None:
        raise SystemExit("--k must be at least 1")
    persona_dir = Path(args.persona) if args.persona else ROOT / "personas" / b.persona_id
    prompts = pick_prompts(persona_dir, [s.id for s in b.stages], b.default_stage, args.n)
    params = b.gen_params(max_tokens=args.max_tokens)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    # Warm-up, one of each: pages the weights in; the first lookup loads MiniLM in embed mode.
    warm_on = one_run(engine, b.stage(prompts[0][1]), prompts[0][0], lore, params)
    one_run(engine, b.stage(prompts[0][1]), prompts[0][0], None, params)
    rows = []
    for i, (q, stage_id) in enumerate(prompts):
        st = b.stage(stage_id)
        # Flip the order every prompt so neither side always runs second (on a warmer CPU cache).
        sides = ("with", "without") if i % 2 == 0 else ("without", "with")
        row = {"question": q, "stage": stage_id, "first": sides[0]}
        for side in sides:
            row[side] = one_run(engine, st, q, lore if side == "with" else None, params)
        rows.append(row)
        print(f"{i}: without {row['without']['ttft_s']:.3f}s ({row['without']['prompt_tokens']} tok)  "
              f"with {row['with']['ttft_s']:.3f}s ({row['with']['prompt_tokens']} tok, "
              f"lookup {row['with']['lookup_ms']:.1f} ms)", file=sys.stderr)
    result = {"bench": "chat_retrieval_ttft", "bundle": Path(args.bundle).name, "gguf": b.gguf.name,
              "retriever": lore.retriever.mode, "k": args.k, "prompts": len(rows), "n_ctx": engine.n_ctx,
              "threads": args.threads, "max_tokens": args.max_tokens, "llama_cpp_python": llama_cpp.__version__,
              "machine": f"{platform.machine()} {os.cpu_count()} cpus", "load_avg_1m_at_start": load,
              "first_lookup_ms": warm_on["lookup_ms"],
              **summarize(rows), "runs": rows}
    atomic_write_json(Path(args.out), result)
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
