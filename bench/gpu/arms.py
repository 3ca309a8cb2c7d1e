"""One measured training arm, run in its own process by ``bench/gpu/run.py``.

Own process because importing unsloth patches transformers/TRL/PEFT for the whole
process (the kit runs it in a worker subprocess for the same reason), and so that every
arm starts with an empty GPU and its own peak-memory counter.

Arms (all LoRA r=16, alpha=32, dropout 0, on q/k/v/o/gate/up/down, gradient checkpointing,
one pre-tokenized random batch of ``seq`` tokens per step, TRL's SFTTrainer):
  unsloth_qlora   unsloth FastLanguageModel, 4-bit, adamw_8bit        (kit: train.backend unsloth)
  trl_qlora       transformers + bitsandbytes nf4 + PEFT, adamw_torch (kit: trl, load_in_4bit)
  trl_lora_bf16   transformers bf16 + PEFT, adamw_torch               (kit: trl)

    python3 bench/gpu/arms.py build --ckpt /tmp/minicpm2b [--tiny]
    python3 bench/gpu/arms.py arm trl_qlora --ckpt /tmp/minicpm2b --result r.json --seq 2048
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the kit's MiniCPM -> Llama config, from the carried source tree

# openbmb/MiniCPM-2B-sft-bf16 config.json, written out (no download on the GPU box).
MINICPM_2B = dict(
    model_type="minicpm", architectures=["MiniCPMForCausalLM"], vocab_size=122753, hidden_size=2304,
    intermediate_size=5760, num_hidden_layers=40, num_attention_heads=36, num_key_value_heads=36,
    max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0, hidden_act="silu",
    initializer_range=0.1, scale_emb=12, dim_model_base=256, scale_depth=1.4, tie_word_embeddings=True,
    bos_token_id=1, eos_token_id=2, torch_dtype="bfloat16",
)
# The same shape family, small enough for a CPU dry run of the whole script.
MINICPM_TINY = {**MINICPM_2B, "vocab_size": 512, "hidden_size": 64, "intermediate_size": 160,
                "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4, "torch_dtype": "float32"}
ARMS = ("unsloth_qlora", "trl_qlora", "trl_lora_bf16")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
CUDA_ONLY = {"unsloth_qlora": "unsloth trains on NVIDIA GPUs only", "trl_qlora": "bitsandbytes 4-bit needs CUDA"}


def param_count(mc: dict) -> dict:
    """Parameters of the MiniCPM model and of its folded (untied) Llama twin."""
    h, i, v, n = mc["hidden_size"], mc["intermediate_size"], mc["vocab_size"], mc["num_hidden_layers"]
    kv = h // mc["num_attention_heads"] * mc["num_key_value_heads"]
    layer = h * h * 2 + h * kv * 2 + 3 * h * i + 2 * h
    body = n * layer + h
    return {"minicpm": body + v * h, "non_embedding": body, "llama_folded": body + 2 * v * h}


def build_checkpoint(mc: dict, out: Path, seed: int = 0) -> dict:
    """Random weights in MiniCPM's parametrisation, folded to Llama the way the kit does
    (kit/models/minicpm.py), saved with a small stand-in tokenizer (data is pre-tokenized)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from kit.models.minicpm import fold_factors, llama_config

    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    cfg = LlamaConfig(**{**llama_config(mc), "torch_dtype": str(dtype).removeprefix("torch.")})
    t0 = time.perf_counter()
    with torch.device(device):
        model = LlamaForCausalLM(cfg).to(dtype)
    f = fold_factors(mc)
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(f["embed"])
        model.lm_head.weight.copy_(model.model.embed_tokens.weight * (f["logits"] / f["embed"]))
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.mul_(f["residual"])
            layer.mlp.down_proj.weight.mul_(f["residual"])
    model.save_pretrained(str(out), safe_serialization=True)
    _stand_in_tokenizer().save_pretrained(str(out))
    return {"params": sum(p.numel() for p in model.parameters()), "dtype": str(dtype), "device": device,
            "build_s": round(time.perf_counter() - t0, 1)}


def _stand_in_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<pad>": 3, "a": 4}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


def random_rows(n: int, seq: int, vocab: int, seed: int = 0) -> list[list[int]]:
    import random

    rng = random.Random(seed)
    return [[rng.randrange(4, vocab) for _ in range(seq)] for _ in range(n)]


def load_arm(arm: str, ckpt: Path, seq: int):
    """(model with LoRA attached, tokenizer, optimizer name) for one arm."""
    import torch

    if arm in CUDA_ONLY and not torch.cuda.is_available():
        raise RuntimeError(f"skipped: {CUDA_ONLY[arm]}")
    if arm == "unsloth_qlora":
        from unsloth import FastLanguageModel

        model, tok = FastLanguageModel.from_pretrained(str(ckpt), max_seq_length=seq, load_in_4bit=True,
                                                       dtype=torch.bfloat16)
        model = FastLanguageModel.get_peft_model(model, r=16, lora_alpha=32, lora_dropout=0.0,
                                                 target_modules=TARGETS, use_gradient_checkpointing="unsloth",
                                                 random_state=0)
        return model, tok, "adamw_8bit"
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    cuda = torch.cuda.is_available()
    kwargs = {"dtype": torch.bfloat16 if cuda else torch.float32}
    if cuda:
        kwargs["device_map"] = {"": 0}
    if arm == "trl_qlora":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(str(ckpt), **kwargs)
    if arm == "trl_qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model)  # as kit/train does for load_in_4bit
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=TARGETS,
                                             task_type="CAUSAL_LM"))
    return model, AutoTokenizer.from_pretrained(str(ckpt)), "adamw_torch"


def run_arm(arm: str, ckpt: Path, *, seq: int, batch: int, steps: int, warmup: int, budget_s: float) -> dict:
    """Train ``warmup + steps`` steps; tokens/s over the timed steps; peak GPU memory."""
    t_start = time.perf_counter()
    import torch

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    model, tok, optim = load_arm(arm, ckpt, seq)  # unsloth is imported first, before trl
    load_s = time.perf_counter() - t_start
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    vocab = model.get_input_embeddings().weight.shape[0]
    data = Dataset.from_dict({"input_ids": random_rows(batch * (warmup + steps), seq, vocab)})
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if cuda:
                torch.cuda.synchronize()
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.t)
            if time.perf_counter() - t_start > budget_s:  # stop early, keep what was measured
                control.should_training_stop = True

    args = SFTConfig(output_dir=str(ckpt.parent / f"out-{arm}"), per_device_train_batch_size=batch,
                     gradient_accumulation_steps=1, max_steps=warmup + steps, learning_rate=1e-4,
                     logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True, optim=optim,
                     bf16=cuda, use_cpu=not cuda, gradient_checkpointing=arm != "unsloth_qlora" and cuda,
                     max_length=seq, packing=False, dataset_kwargs={"skip_prepare_dataset": True}, seed=0)
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok, callbacks=[Clock()])
    out = trainer.train()
    timed = times[warmup:] or times[-1:]
    result = {"arm": arm, "seq": seq, "batch": batch, "optim": optim, "steps_done": len(times),
              "timed_steps": len(timed), "load_s": round(load_s, 1),
              "tokens_per_s": round(batch * seq * len(timed) / sum(timed), 1) if timed else None,
              "step_s": [round(t, 3) for t in times], "final_loss": round(float(out.training_loss), 4),
              "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    if cuda:
        result["peak_alloc_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        result["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="One GPU-check arm (see bench/gpu/run.py).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--ckpt", type=Path, required=True)
    b.add_argument("--tiny", action="store_true")
    a = sub.add_parser("arm")
    a.add_argument("arm", choices=ARMS)
    a.add_argument("--ckpt", type=Path, required=True)
    a.add_argument("--result", type=Path, required=True)
    a.add_argument("--seq", type=int, default=2048)
    a.add_argument("--batch", type=int, default=1)
    a.add_argument("--steps", type=int, default=8)
    a.add_argument("--warmup", type=int, default=2)
    a.add_argument("--budget-s", type=float, default=150.0)
    args = ap.parse_args(argv)
    if args.cmd == "build":
        info = build_checkpoint(MINICPM_TINY if args.tiny else MINICPM_2B, args.ckpt)
        print(json.dumps(info))
        return 0
    try:
        res = run_arm(args.arm, args.ckpt, seq=args.seq, batch=args.batch, steps=args.steps, warmup=args.warmup,
                      budget_s=args.budget_s)
    except RuntimeError as exc:
        if not str(exc).startswith("skipped:"):
            raise
        res = {"arm": args.arm, "skipped": str(exc).removeprefix("skipped: ")}
    args.result.write_text(json.dumps(res, indent=2), encoding="utf-8")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
