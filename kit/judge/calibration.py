"""How often a judge agrees with a careful human: accuracy and Cohen's kappa on the labelled
set ``kit/data/judge_calibration.json`` (answers written by us, in and out of character,
correct and wrong). Every eval report prints these figures for the rule layer and the model
judge separately, so a reader knows what a judged rate is worth."""

from __future__ import annotations

import json
from importlib import resources
from types import SimpleNamespace

TASKS = ("induction", "knowledge", "consistency")


def load_set() -> dict:
    return json.loads(resources.files("kit.data").joinpath("judge_calibration.json").read_text(encoding="utf-8"))


def cohen_kappa(labels: list[bool], preds: list[bool]) -> float | None:
    """Agreement beyond chance between two binary raters (None when undefined: one class only
    on both sides makes chance agreement 1)."""
    n = len(labels)
    if n == 0:
        return None
    po = sum(a == b for a, b in zip(labels, preds)) / n
    pl, pp = sum(labels) / n, sum(preds) / n
    pe = pl * pp + (1 - pl) * (1 - pp)
    return None if pe >= 1 else (po - pe) / (1 - pe)


def verdicts(judge, data: dict, tasks=TASKS) -> list[tuple[dict, object]]:
    """(item, Verdict) for every calibration item of ``tasks``."""
    p = data["persona"]
    persona = SimpleNamespace(name=p["name"], identity=p["identity"])
    out = []
    for it in data["items"]:
        if it["task"] not in tasks:
            continue
        if it["task"] == "induction":
            v = judge.induction(question=it["question"], answer=it["answer"], kind=it.get("kind"),
                                persona=persona, stage=p["stage"])
        elif it["task"] == "knowledge":
            v = judge.knowledge(question=it["question"], answer=it["answer"], reference=it["reference"])
        else:
            v = judge.consistency(question=it["question"], answers=it["answers"])
        out.append((it, v))
    return out


def score(pairs: list[tuple[dict, object]]) -> dict:
    """Accuracy and kappa per task and overall; failed judge calls are counted, not scored."""
    res: dict = {}
    for task in (*TASKS, "all"):
        got = [(it["label"], v.passed) for it, v in pairs if task in ("all", it["task"])]
        done = [(lab, p) for lab, p in got if p is not None]
        if not got:
            continue
        labels, preds = [lab for lab, _ in done], [bool(p) for _, p in done]
        res[task] = {"n": len(done), "failed": len(got) - len(done),
                     "accuracy": (sum(a == b for a, b in done) / len(done)) if done else None,
                     "kappa": cohen_kappa(labels, preds),
                     "false_pass": sum(p and not lab for lab, p in zip(labels, preds)),
                     "false_fail": sum(lab and not p for lab, p in zip(labels, preds))}
        # How often the model itself said "pass" when asked (rule vetoes excluded): a judge that
        # passes everything it is asked about adds nothing to the rule layer.
        asked = [v.passed for it, v in pairs if task in ("all", it["task"]) and v.judge == "teacher"]
        if asked:
            res[task]["asked"], res[task]["asked_passed"] = len(asked), sum(bool(p) for p in asked)
    return res


def stratified(data: dict, n: int | None) -> dict:
    """At most ``n`` items, taken in turn from each (task, label) cell in file order, so a small
    budget keeps every task with both labels."""
    items = data["items"]
    if n is None or n >= len(items):
        return data
    cells: dict = {}
    for it in items:
        cells.setdefault((it["task"], it["label"]), []).append(it)
    picked: list = []
    k = 0
    while len(picked) < n:
        for cell in cells.values():
            if k < len(cell) and len(picked) < n:
                picked.append(cell[k])
        k += 1
    keep = {id(it) for it in picked}
    return {**data, "items": [it for it in items if id(it) in keep]}


def calibrate(judge, model_items: int | None = None) -> dict:
    """Figures for the rule layer always (on the whole set: it costs nothing), and for the
    model judge when ``judge`` is one, on ``model_items`` of them (stratified) when given:
    each model verdict not vetoed by the rules is a judge call."""
    from kit.judge.rules import RuleJudge

    data = load_set()
    out = {"set": "kit/data/judge_calibration.json", "items": len(data["items"]),
           "rules": score(verdicts(RuleJudge(), data))}
    if getattr(judge, "kind", None) == "teacher":
        before = judge.failures
        sub = stratified(data, model_items)
        out["model_items"] = len(sub["items"])
        out["model"] = score(verdicts(judge, sub))
        out["model_label"] = getattr(judge, "label", "teacher")
        judge.failures = before  # calibration calls are reported here, not as eval failures
    return out
