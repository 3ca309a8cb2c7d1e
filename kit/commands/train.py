"""``perskit train <recipe>``: personified SFT (LoRA/QLoRA) on the constructed data.

    perskit train recipes/smoke.yaml
    perskit train recipes/ada.yaml --set train.max_steps=200 --set train.packing=true
    perskit train recipes/ada.yaml --resume      # continue from the newest checkpoint
    perskit train recipes/ada.yaml --set train.backend=mlx

Reads <run>/construct/train.jsonl (and test.jsonl for an eval loss); writes <run>/sft/adapter
(PEFT adapter + tokenizer + the chat template used), metrics.jsonl and manifest.json.
Multi-GPU: `accelerate launch --num_processes N -m kit train <recipe>` (see docs/training.md).
"""

from __future__ import annotations

import click

from kit.commands._common import open_run, recipe_options


@click.command("train")
@recipe_options
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its newest checkpoint.")
@click.option("--force", is_flag=True, help="Retrain even if the adapter is up to date.")
def command(recipe, run_dir, overrides, resume, force):
    """Train a persona LoRA adapter (SFT) with the recipe's backend (trl, unsloth or mlx)."""
    from kit.train.stage import run_sft

    loaded, _persona, run = open_run(recipe, run_dir, overrides)
    m = run_sft(loaded, run, resume=resume, force=force, echo=click.echo)
    if not m.get("adapter"):
        return  # a non-zero rank under accelerate launch: rank 0 reports
    r = m.get("metrics", {})
    click.echo(f"sft: {r.get('steps')} steps on {r.get('records')} records "
               f"(+{r.get('general_rows', 0)} general), final loss {r.get('final_loss')}, "
               f"{r.get('tokens_per_s')} tok/s, peak RSS {m.get('peak_rss_mb')} MiB")
    click.echo(f"  adapter: {m.get('adapter')}")
