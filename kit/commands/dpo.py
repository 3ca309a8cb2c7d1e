"""``perskit dpo <recipe>``: mine preference pairs automatically, then run DPO from the SFT adapter.

    perskit dpo recipes/smoke.yaml
    perskit dpo recipes/ada.yaml --set dpo.contrast_personas='[personas/tomas-reyes]'
    perskit dpo recipes/ada.yaml --set dpo.judge=heuristic --set dpo.max_pairs=200
    perskit dpo recipes/ada.yaml --resume

Writes <run>/dpo/pairs.jsonl (TRL conversational preference rows with meta.source),
<run>/dpo/adapter, metrics.jsonl (loss, reward accuracy, margins) and manifest.json.
"""

from __future__ import annotations

import click

from kit.commands._common import open_run, recipe_options


@click.command("dpo")
@recipe_options
@click.option("--resume", is_flag=True, help="Continue an interrupted DPO run from its newest checkpoint.")
@click.option("--force", is_flag=True, help="Retrain even if the DPO adapter is up to date (pairs are reused).")
def command(recipe, run_dir, overrides, resume, force):
    """Mine preference pairs (other persona, base model, induction, wrong stage) and train DPO."""
    from kit.dpo.stage import run_dpo

    loaded, persona, run = open_run(recipe, run_dir, overrides)
    m = run_dpo(loaded, persona, run, resume=resume, force=force, echo=click.echo)
    if not m.get("adapter"):
        return  # dpo disabled, or a non-zero rank under accelerate launch
    r = m.get("metrics", {})
    click.echo(f"dpo: {r.get('steps')} steps on {r.get('pairs')} pairs {m.get('counts', {})}; "
               f"reward accuracy {r.get('reward_accuracy')}, margin {r.get('reward_margin')}, "
               f"peak RSS {m.get('peak_rss_mb')} MiB")
    click.echo(f"  adapter: {m.get('adapter')}")
