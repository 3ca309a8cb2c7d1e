"""Decode speed of the chat engine vs raw llama-cpp-python, same GGUF and prompt, one run.

    OMP_NUM_THREADS=1 .venv/bin/python bench/chat_decode.py                 # embedded SmolLM2-135M Q4_1
    .venv/bin/python bench/chat_decode.py --gguf model.gguf --threads 2 --rounds 5 --max-tokens 128

Both sides load the same GGUF with the same context size and threads, get the same
token ids (the chat template rendered once by LlamaCppEngine) and decode greedily, so
they produce the same tokens. Runs alternate raw/engine for ``--rounds`` rounds (the order flips every round) with the
KV cache reset before each run, so prompt processing is cold for both. Decode tokens/s
counts tokens after the first over the time after the first; time to first token is
measured from the call. Writes bench/results/chat_decode.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SYSTEM = "You are Ada Lin, a bridge engineer who has spent forty years inspecting river crossings."
USER = "Tell me, in detail, the story of the hardest bridge inspection of your career."


def timed_stream(pieces) -> dict:
    """Consume a text stream; return token count, ttft and decode rate."""
    t0 = time.perf_counter()
    t_first = t_last = None
    n = 0
    for _ in pieces:
        now = time.perf_counter()
        if t_first is None:
            t_first = now
        t_last = now
        n += 1
    decode_s = (t_last - t_first) if n > 1 else 0.0
    return {"tokens": n, "ttft_s": round(t_first - t0, 4) if t_first else None,
            "decode_tok_s": round((n - 1) / decode_s, 2) if decode_s > 0 else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", default=None, help="GGUF file (default: the embedded SmolLM2-135M-Instruct Q4_1)")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--n-ctx", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "chat_decode.json"))
    args = ap.parse_args(argv)

    import llama_cpp

    from kit.engine.base import GenParams
    from kit.engine.llamacpp import LlamaCppEngine
    from kit.models.resolve import embedded_gguf
    from kit.rundir import atomic_write_json

    gguf = Path(args.gguf) if args.gguf else embedded_gguf("smollm2-135m-instruct")
    engine = LlamaCppEngine(gguf, n_ctx=args.n_ctx, n_threads=args.threads)
    raw = llama_cpp.Llama(model_path=str(gguf), n_ctx=args.n_ctx, n_threads=args.threads,
                          n_threads_batch=args.threads, verbose=False)
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]
    tokens = engine.tokenize_prompt(engine.render(messages))
    params = GenParams(temperature=0, max_tokens=args.max_tokens)

    def run_raw():
        raw.reset()
        chunks = raw.create_completion(tokens, max_tokens=args.max_tokens, temperature=0, top_p=params.top_p,
                                       stream=True)
        return timed_stream(c for c in chunks if c["choices"][0]["text"])

    def run_engine():
        engine.llm.reset()
        return timed_stream(engine.stream(messages, params))

    run_raw(), run_engine()  # warm-up: page the weights in for both
    rows = []
    for r in range(args.rounds):
        # Flip the order each round so neither side always runs on a warmer cache.
        if r % 2:
            e, w = run_engine(), run_raw()
        else:
            w, e = run_raw(), run_engine()
        rows.append({"round": r, "raw": w, "engine": e})
        print(f"round {r}: raw {rows[-1]['raw']}  engine {rows[-1]['engine']}", file=sys.stderr)

    def med(side, key):
        vals = [row[side][key] for row in rows if row[side][key] is not None]
        return round(statistics.median(vals), 4) if vals else None

    result = {
        "bench": "chat_decode", "gguf": gguf.name, "prompt_tokens": len(tokens), "max_tokens": args.max_tokens,
        "threads": args.threads, "rounds": args.rounds, "n_ctx": args.n_ctx,
        "llama_cpp_python": llama_cpp.__version__, "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "raw": {"decode_tok_s": med("raw", "decode_tok_s"), "ttft_s": med("raw", "ttft_s"),
                "tokens": med("raw", "tokens")},
        "engine": {"decode_tok_s": med("engine", "decode_tok_s"), "ttft_s": med("engine", "ttft_s"),
                   "tokens": med("engine", "tokens")},
        "runs": rows,
    }
    # The box is shared, so single runs swing by +-15%: the headline ratio is the median of the
    # per-round ratios (raw and engine run back to back), with best-of-N speeds beside it.
    paired = [row["engine"]["decode_tok_s"] / row["raw"]["decode_tok_s"] for row in rows
              if row["engine"]["decode_tok_s"] and row["raw"]["decode_tok_s"]]
    best = {side: max(row[side]["decode_tok_s"] or 0 for row in rows) for side in ("raw", "engine")}
    result["ratio_engine_over_raw"] = round(statistics.median(paired), 3)
    result["ratio_of_medians"] = round(result["engine"]["decode_tok_s"] / result["raw"]["decode_tok_s"], 3)
    result["best_decode_tok_s"] = best
    result["ratio_of_best"] = round(best["engine"] / best["raw"], 3)
    result["goal"] = ">= 0.95"
    result["pass"] = result["ratio_engine_over_raw"] >= 0.95
    atomic_write_json(Path(args.out), result)
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    engine.close()
    raw.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
