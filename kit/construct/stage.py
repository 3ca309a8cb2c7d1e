"""The ``construct`` stage: a persona's materials -> construct/train.jsonl + test.jsonl
(the work is ``kit.construct.pipeline``; this is its entry in the stage registry)."""

from __future__ import annotations

from kit.rundir import Manifest


def run(ctx) -> Manifest:
    from kit.construct.pipeline import run_construct

    return run_construct(ctx.loaded, ctx.persona, ctx.run, force=ctx.force, console=ctx.console)


def report(ctx, m: Manifest) -> list[str]:
    c = m.get("counts", {})
    lines = [f"construct: {c.get('train', 0)} train / {c.get('test', 0)} test rows in {ctx.run.path / 'construct'}",
             f"  per pattern: {c.get('per_pattern', {})}",
             f"  per stage:   {c.get('per_stage', {})}",
             f"  dropped:     {c.get('dropped', {})}  template questions: {c.get('question_fallbacks', {})}",
             f"  teacher:     {m.get('teacher_stats', {})}"]
    if c.get("missing"):
        lines.append(f"  warning: no generated rows for {', '.join(c['missing'])} "
                     "(raise construct.max_passages or use a stronger teacher)")
    return lines
