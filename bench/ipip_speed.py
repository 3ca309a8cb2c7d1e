"""Time IPIP-NEO-120 administration (logprob scoring) with HFEngine, batched vs unbatched.

    OMP_NUM_THREADS=2 .venv/bin/python bench/ipip_speed.py                 # smollm2-135m-instruct
    .venv/bin/python bench/ipip_speed.py --model tiny-llama-spm --unbatched-items 10

Batched = ``choice_logprobs_batch`` (shared persona prefix computed once, one forward per
batch); unbatched = one forward per item over the whole prompt, no prefix cache. The
unbatched path is timed on ``--unbatched-items`` items and reported per item, so the ratio
is per item. Both paths' label log-probabilities are compared on those items. Results go
to bench/results/ipip_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--persona", default=str(Path(__file__).resolve().parents[1] / "personas" / "ada-lin"))
    ap.add_argument("--items", type=int, default=120)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--unbatched-items", type=int, default=8)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "ipip_speed.json"))
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from kit.engine.hf import HFEngine
    from kit.eval import ipip
    from kit.models.resolve import materialize
    from kit.rundir import atomic_write_json
    from kit.spec.persona import load_persona

    persona = load_persona(args.persona).spec
    system = persona.system_prompt(None)
    t0 = time.perf_counter()
    engine = HFEngine(materialize(args.model))
    load_s = time.perf_counter() - t0
    items = ipip.subset(ipip.load_items(), args.items)
    var = ipip.make_variants(1)[0]

    t0 = time.perf_counter()
    admin = ipip.administer(engine, system, items, [var], mode="logprob", batch_size=args.batch)
    batched_s = time.perf_counter() - t0

    sub = items[: args.unbatched_items]
    msgs = [ipip.item_messages(system, it, var) for it in sub]
    engine._prefix = None
    engine.prefix_cache = False
    t0 = time.perf_counter()
    plain = [engine.choice_logprobs_batch([m], list(ipip.LABELS))[0] for m in msgs]
    unbatched_s = time.perf_counter() - t0
    engine.prefix_cache = True
    engine._prefix = None
    batched_sub = ipip.batched_choice_logprobs(engine, msgs, list(ipip.LABELS), args.batch)
    max_diff = max(abs(a - b) for r1, r2 in zip(plain, batched_sub) for a, b in zip(r1, r2))

    prompt_tokens = len(engine._encode(engine.prompt_text(msgs[0])))
    per_item_b = batched_s / len(items)
    per_item_u = unbatched_s / len(sub)
    result = {
        "model": args.model, "items": len(items), "batch": args.batch, "threads": args.threads,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__, "prompt_tokens_first_item": prompt_tokens, "load_s": round(load_s, 2),
        "batched_s": round(batched_s, 2), "batched_s_per_item": round(per_item_b, 4),
        "unbatched_items": len(sub), "unbatched_s": round(unbatched_s, 2),
        "unbatched_s_per_item": round(per_item_u, 4),
        "unbatched_s_120_estimate": round(per_item_u * 120, 1),
        "speedup_per_item": round(per_item_u / per_item_b, 2),
        "max_abs_logprob_diff_batched_vs_unbatched": max_diff,
        "domains_expected": admin["summary"]["expected"], "goal_s": 60,
        "meets_goal": batched_s * 120 / len(items) <= 60,
    }
    atomic_write_json(Path(args.out), result)
    print(json.dumps({k: v for k, v in result.items() if k != "domains_expected"}, indent=2))


if __name__ == "__main__":
    main()
