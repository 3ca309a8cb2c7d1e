"""SFT throughput: perskit's ``trl`` backend vs plain TRL + PEFT, same model, data and steps.

    OMP_NUM_THREADS=1 .venv/bin/python bench/sft_throughput.py                      # SmolLM2-135M, CPU
    .venv/bin/python bench/sft_throughput.py --model tiny-llama-spm --records 64   # quick
    .venv/bin/python bench/sft_throughput.py --data runs/ada-lin-quickstart/construct/train.jsonl

Four runs in one process, each over one epoch of the same data and measured the same way
(effective = non-padding input tokens per second of ``trainer.train()``, model loading
excluded): plain TRL+PEFT (padded batches, TRL's own tokenisation), plain TRL+PEFT with
packing, perskit (padded), perskit with packing (padding-free BFD). Padded runs take
ceil(records / batch) steps; packed runs take ceil(tokens / (max_len * batch)) steps, i.e.
the same epoch in fewer, fuller batches. Writes ``bench/results/sft_throughput.json``.
Default data: the bundled persona's gold answers cut to varied lengths (real chat data
varies a lot in length, which is what padding wastes and packing recovers).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def persona_records(n: int, seed: int = 0) -> list[dict]:
    from kit.spec.persona import load_persona

    p = load_persona(ROOT / "personas" / "ada-lin").spec
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        g = p.gold[i % len(p.gold)]
        words = (g.a + " " + p.gold[(i * 7 + 3) % len(p.gold)].a).split()
        answer = " ".join(words[: rng.randint(8, len(words))])  # varied lengths, as real data has
        rows.append({"messages": [{"role": "system", "content": f"You are {p.name}. {p.style[0]}"},
                                  {"role": "user", "content": g.q}, {"role": "assistant", "content": answer}]})
    return rows


def epoch_steps(base: Path, data: Path, args, packing: bool) -> int:
    """Steps for one epoch: one per batch of records, or per batch of packed max_len rows."""
    import math

    from kit.train.data import load_records, resolve_chat_template, tokenize_records
    from kit.tuning.hf import load_tokenizer

    rows = load_records(data)
    if not packing:
        return math.ceil(len(rows) / args.batch_size)
    tok = load_tokenizer(base)
    tpl = resolve_chat_template(tok, args.model, base, None)
    tokens = sum(len(r["input_ids"]) for r in tokenize_records(tok, tpl, rows, args.max_len))
    return math.ceil(tokens / (args.max_len * args.batch_size))


def plain_trl(base: Path, data: Path, out: Path, args, packing: bool) -> dict:
    """What a user would write with TRL + PEFT directly."""
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from kit.train.progress import make_callback
    from kit.tuning.hf import model_config, quiet

    tok = AutoTokenizer.from_pretrained(str(base))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(base), config=model_config(base), dtype=torch.float32)
    ds = load_dataset("json", data_files=str(data), split="train")
    cfg = SFTConfig(output_dir=str(out), max_steps=epoch_steps(base, data, args, packing), per_device_train_batch_size=args.batch_size,
                    learning_rate=2e-4, logging_steps=1, save_strategy="no", use_cpu=True, bf16=False,
                    report_to="none", disable_tqdm=True, include_num_input_tokens_seen="non_padding",
                    max_length=args.max_len, packing=packing, seed=0)
    peft = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    cb = make_callback(out / "metrics.jsonl", "plain TRL" + (" +packing" if packing else ""), show=False)
    trainer = SFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok, peft_config=peft,
                         callbacks=[cb])
    quiet(trainer)
    trainer.train()
    return cb.summary


def ours(base: Path, data: Path, out: Path, args, packing: bool) -> dict:
    from kit.train.config import TrlTrain
    from kit.train.trl_sft import sft

    cfg = TrlTrain(model=args.model, max_steps=epoch_steps(base, data, args, packing), batch_size=args.batch_size, max_seq_len=args.max_len,
                   packing=packing, save_every=10**6, learning_rate=2e-4, device="cpu")
    r = sft(cfg, data, None, out, base)
    return {"tokens": r["train_tokens"], "seconds": r["train_seconds"], "tokens_per_s": r["train_tokens_per_s"],
            "steps": r["steps"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--data", type=Path, default=None, help="SFT JSONL (default: persona gold, varied lengths)")
    ap.add_argument("--records", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-len", type=int, default=384)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "sft_throughput.json")
    args = ap.parse_args()

    import torch

    from kit.models.resolve import materialize
    from kit.rundir import atomic_write_json, peak_rss_mb

    base = materialize(args.model)
    work = Path(tempfile.mkdtemp(prefix="perskit-bench-"))
    data = args.data
    if data is None:
        data = work / "train.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in persona_records(args.records)), encoding="utf-8")
    runs = {}
    for name, fn, packing in [("plain_trl", plain_trl, False), ("perskit", ours, False),
                              ("plain_trl_packing", plain_trl, True), ("perskit_packing", ours, True)]:
        t = time.perf_counter()
        runs[name] = {**fn(base, data, work / name, args, packing), "wall_s": round(time.perf_counter() - t, 2)}
        print(f"{name:>18}: {runs[name]['tokens_per_s']:>9,.1f} effective tok/s "
              f"({runs[name]['tokens']} tokens in {runs[name]['seconds']} s)")
    base_tps = runs["plain_trl"]["tokens_per_s"] or 1e-9
    ratios = {"perskit_vs_plain": round(runs["perskit"]["tokens_per_s"] / base_tps, 3),
              "perskit_packing_vs_plain": round(runs["perskit_packing"]["tokens_per_s"] / base_tps, 3),
              "plain_packing_vs_plain": round(runs["plain_trl_packing"]["tokens_per_s"] / base_tps, 3)}
    result = {"model": args.model, "records": args.records, "batch_size": args.batch_size, "max_len": args.max_len,
              "data": str(args.data) if args.data else f"persona gold, {args.records} records, varied lengths",
              "device": "cuda" if torch.cuda.is_available() else "cpu", "torch_threads": torch.get_num_threads(),
              "machine": platform.machine(), "runs": runs, "ratios": ratios, "peak_rss_mb": peak_rss_mb(),
              "note": "effective tokens/s = non-padding input tokens / trainer.train() seconds; perskit trains "
                      "on assistant tokens only, plain TRL on every token (same forward/backward cost)."}
    atomic_write_json(args.out, result)
    print(json.dumps(ratios))
    return 0


if __name__ == "__main__":
    sys.exit(main())
