"""One judge for every stage: a rule layer and a model judge with one ``Verdict``.

Eval grades answers with it; DPO mining calls an answer that *failed* an induction verdict a
give-in. This package knows no stage: it imports only the shared layer (teachers, errors).
"""

from kit.judge.verdict import Verdict

__all__ = ["Verdict", "make_judge"]


def make_judge(mode: str, teacher_cfg=None, cache_dir=None, *, where: str = "eval.judge"):
    """``heuristic`` (rules only) | ``teacher`` (model judge; fails loudly when it cannot be
    built) | ``auto`` (model judge when it can be built, else rules)."""
    from kit.judge.rules import RuleJudge

    if mode == "heuristic" or (mode == "auto" and teacher_cfg is None):
        return RuleJudge()
    if mode not in ("teacher", "auto"):
        from kit.errors import KitError

        raise KitError(f"unknown judge '{mode}'", where=f"recipe: {where}", fix="use teacher, heuristic or auto")
    from kit.judge.model import ModelJudge

    try:
        from kit.teachers import make_teacher

        return ModelJudge(make_teacher(teacher_cfg, cache_dir), label=describe(teacher_cfg))
    except Exception as exc:  # noqa: BLE001 - any failure to build the model judge means "unavailable"
        if mode == "teacher":
            from kit.errors import KitError

            raise KitError(f"the judge model is unavailable: {exc}", where=f"recipe: {where}",
                           fix=f"start the judge's server or fix its model path, or set {where}: heuristic") from None
        return RuleJudge()


def describe(teacher_cfg) -> str:
    """Which model judged, in words: kind and model (and server for OpenAI-compatible ones)."""
    if teacher_cfg is None:
        return "rules"
    kind = getattr(teacher_cfg, "kind", "?")
    model = getattr(teacher_cfg, "model", None)
    url = getattr(teacher_cfg, "base_url", None)
    return f"{kind}:{model}" + (f" @ {url}" if url else "")
