"""The unsloth worker: ``python -m kit.tuning.unsloth_worker job.json`` (started by
``kit.tuning.unsloth.run_job``; never imported by the parent process).

unsloth must be imported before transformers/TRL/PEFT so its patches apply, which is
why this is a separate process and why ``import unsloth`` is the first thing ``main``
does. The job names its work as ``"target": "module:function"`` (the SFT and DPO stages
each bring their own), so this module knows no stage.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path


def load(base_dir: str, cfg: dict, adapter: str | None = None):
    from unsloth import FastLanguageModel

    model, tok = FastLanguageModel.from_pretrained(model_name=adapter or base_dir,
                                                   max_seq_length=cfg.get("max_seq_len", 2048),
                                                   load_in_4bit=cfg.get("load_in_4bit", True), dtype=None)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok


def generate_job(job: dict) -> dict:
    import torch
    from unsloth import FastLanguageModel

    from kit.tuning.data import resolve_chat_template

    model, tok = load(job["base_dir"], {"load_in_4bit": True}, adapter=job.get("adapter"))
    FastLanguageModel.for_inference(model)
    template = resolve_chat_template(tok, job["base_dir"], Path(job["base_dir"]), None)
    replies = []
    for msgs in job["messages_batch"]:
        text = tok.apply_chat_template(msgs, chat_template=template, tokenize=False, add_generation_prompt=True)
        enc = tok(text, return_tensors="pt", add_special_tokens=False).to("cuda")
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=job["max_tokens"], do_sample=False)
        replies.append(tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    return {"replies": replies}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m kit.tuning.unsloth_worker job.json", file=sys.stderr)
        return 2
    import unsloth  # noqa: F401  - first, so its patches apply to everything imported below

    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    module, func = job["target"].split(":")
    result = getattr(importlib.import_module(module), func)(job)
    from kit.rundir import atomic_write_json

    atomic_write_json(Path(job["result_path"]), result)
    return 0


if __name__ == "__main__":  # pragma: no cover - run as a subprocess
    sys.exit(main())
