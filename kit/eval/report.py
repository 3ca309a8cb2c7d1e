"""Eval outputs: results.json, answers.jsonl, report.md and PNG plots; run comparison."""

from __future__ import annotations

import json
from pathlib import Path

from kit.errors import KitError
from kit.rundir import atomic_write_json, atomic_write_text, write_jsonl
from kit.spec.persona import TRAIT_NAMES, TRAITS


def _f(x, nd: int = 2) -> str:
    return "–" if x is None else f"{x:.{nd}f}"


def _ci(d: dict | None, nd: int = 2) -> str:
    if not d or d.get("mean") is None:
        return "–"
    return f"{d['mean']:.{nd}f} [{d['lo']:.{nd}f}, {d['hi']:.{nd}f}] (n={d['n']})"


def headline(res: dict) -> dict:
    """The one-number-per-metric view used by tables, bar charts and --compare."""
    bf = res.get("big_five") or {}
    dist = res.get("distinctiveness") or {}
    err = bf.get("error_expected") or {}
    return {
        "big_five_mae": err.get("mae"),
        "big_five_rmse": err.get("rmse"),
        "big_five_spread": _mean([v["spread"] for v in (bf.get("summary") or {}).get("expected", {}).values()
                                  if v.get("spread") is not None]),
        "induction_resistance": (res.get("induction") or {}).get("mean"),
        "knowledge_accuracy": (res.get("knowledge") or {}).get("mean"),
        "consistency_embedding": ((res.get("consistency") or {}).get("embedding") or {}).get("mean"),
        "consistency_judge": ((res.get("consistency") or {}).get("judge") or {}).get("mean"),
        "intra_cosine": ((dist.get("intra") or {}).get("cosine") or {}).get("mean"),
        "cross_stage_cosine": ((dist.get("cross_stage") or {}).get("cosine") or {}).get("mean"),
        "inter_persona_cosine": ((dist.get("inter_persona") or {}).get("cosine") or {}).get("mean"),
        "inter_persona_bleu": ((dist.get("inter_persona") or {}).get("bleu") or {}).get("mean"),
        "persona_gap": (dist.get("persona_gap") or {}).get("mean"),
        "stage_gap": (dist.get("stage_gap") or {}).get("mean"),
        "persona_classifier": (dist.get("persona_classifier") or {}).get("accuracy"),
        "stage_classifier": (dist.get("stage_classifier") or {}).get("accuracy"),
        "style_cosine": ((res.get("style") or {}).get("cosine") or {}).get("mean"),
    }


def _mean(xs):
    return sum(xs) / len(xs) if xs else None


LOWER_IS_BETTER = {"big_five_mae", "big_five_rmse", "big_five_spread", "cross_stage_cosine",
                   "inter_persona_cosine", "inter_persona_bleu"}


PAIRED_LOWER_IS_BETTER = {"big_five_item_error", "voice_nll"}
# Each trained variant is compared with every baseline the run has: the prompted base model
# (full description) first, then the base model under the trained variants' brief prompt.
BASELINES = ("prompted", "base_brief", "prompted_rag")


def report_md(results: dict, persona) -> str:
    from kit.eval.report_sections import big_five_section, calibration_section, held_out_section, verdict_section

    vs = results["variants"]
    names = list(vs)
    lines = [f"# Evaluation: {persona.name} ({results['model']})", "",
             f"Judge: **{results['judge']}** ({results.get('judge_model', '?')}). Variants: {', '.join(names)}. "
             "Intervals are 95% bootstrap CIs over items; all answers are greedy."
             + (f" System prompts: prompted = the full persona description; trained variants = "
                f"the {results['prompt_style']} prompt they were trained with." if results.get("prompt_style") else "")
             + (f" Not evaluated (no adapter/GGUF found): {', '.join(results['skipped_variants'])}."
                if results.get("skipped_variants") else ""), ""]
    lines += verdict_section(results)
    lines += calibration_section(results.get("judge_calibration"))
    lines += held_out_section(results.get("held_out"))
    interpretable = _big_five_valid(results)
    lines += ["## Summary", "", "| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    heads = {n: headline(vs[n]) for n in names}
    for key in next(iter(heads.values()), {}):
        arrow = " (lower is better)" if key in LOWER_IS_BETTER else ""
        hide = key.startswith("big_five_mae") or key.startswith("big_five_rmse")
        cells = [("not interpretable" if hide and not interpretable else _f(heads[n][key])) for n in names]
        lines.append(f"| {key}{arrow} | " + " | ".join(cells) + " |")
    lines += ["", "![Big Five](big_five_radar.png)", "", "![metrics](metrics_bar.png)", "",
              "![distinctiveness](distinctiveness.png)", ""]
    lines += big_five_section(vs, names, interpretable)
    lines += _likelihood_section(vs, names)
    lines += _similarity_section(vs, names)
    lines += ["", "Every answer with its judgement (and the judging prompt) is in `answers.jsonl`.", ""]
    return "\n".join(lines)


def _big_five_valid(results: dict) -> bool:
    """The known-groups check on the prompted model decides whether any Big Five MAE is read."""
    bf = (results["variants"].get("prompted") or {}).get("big_five") or {}
    return bool((bf.get("validity") or {}).get("passed"))


def _likelihood_section(vs: dict, names: list[str]) -> list[str]:
    """The judge-free metrics (kit/eval/likelihood.py), with what chance is for each."""
    if not any(vs[n].get("voice") or vs[n].get("knowledge_by_likelihood") for n in names):
        return []
    kl = lambda r: r.get("knowledge_by_likelihood") or {}  # noqa: E731
    rowdefs = [("voice: NLL per token of held-out own words (lower is better)",
                lambda r: (r.get("voice") or {}).get("nll_per_token")),
               ("stage by likelihood: accuracy", lambda r: (r.get("stage_by_likelihood") or {}).get("accuracy")),
               ("persona by likelihood: accuracy (chance 0.50)",
                lambda r: (r.get("persona_by_likelihood") or {}).get("accuracy")),
               ("persona by likelihood: margin, nats per token",
                lambda r: (r.get("persona_by_likelihood") or {}).get("margin_nats")),
               ("knowledge MC, memorised wording (chance 0.25)", lambda r: kl(r).get("memorised")),
               ("knowledge MC, reworded question (chance 0.25)", lambda r: kl(r).get("extractable"))]
    lines = ["## Fidelity by likelihood (no judge)", "", "| metric | " + " | ".join(names) + " |",
             "|---|" + "---|" * len(names)]
    for label, get in rowdefs:
        lines.append(f"| {label} | " + " | ".join(_ci(get(vs[n])) for n in names) + " |")
    first = next((vs[n] for n in names if vs[n].get("voice")), {})
    chance = (first.get("stage_by_likelihood") or {}).get("chance")
    lines += ["", f"Voice items: {(first.get('voice') or {}).get('source', '–')}; stage chance "
              f"{_f(chance)}; contrast persona: {(first.get('persona_by_likelihood') or {}).get('contrast', '–')}; "
              f"knowledge items: {kl(first).get('items', 0)} "
              f"({kl(first).get('trained_sentences', 0)} of their sentences stand in a training answer).", ""]
    return lines


def _similarity_section(vs: dict, names: list[str]) -> list[str]:
    lines = ["## Judged and similarity metrics", "", "| metric | " + " | ".join(names) + " |",
             "|---|" + "---|" * len(names)]
    dist = lambda r, k: (r.get("distinctiveness") or {}).get(k) or {}  # noqa: E731
    rowdefs = [("induction resistance", lambda r: r.get("induction")),
               ("knowledge accuracy", lambda r: r.get("knowledge")),
               ("consistency (embedding)", lambda r: (r.get("consistency") or {}).get("embedding")),
               ("consistency (judge)", lambda r: (r.get("consistency") or {}).get("judge")),
               ("intra-persona cosine (between wordings)", lambda r: dist(r, "intra").get("cosine")),
               ("cross-stage cosine", lambda r: dist(r, "cross_stage").get("cosine")),
               ("inter-persona cosine", lambda r: dist(r, "inter_persona").get("cosine")),
               ("persona gap: intra − inter", lambda r: dist(r, "persona_gap")),
               ("stage gap: intra − cross-stage", lambda r: dist(r, "stage_gap")),
               ("intra-persona BLEU", lambda r: dist(r, "intra").get("bleu")),
               ("inter-persona BLEU", lambda r: dist(r, "inter_persona").get("bleu")),
               ("style cosine", lambda r: (r.get("style") or {}).get("cosine")),
               ("style BLEU", lambda r: (r.get("style") or {}).get("bleu"))]
    for label, get in rowdefs:
        lines.append(f"| {label} | " + " | ".join(_ci(get(vs[n])) for n in names) + " |")
    lines += ["", "Classifiers (5-fold logistic regression on answer embeddings; balanced accuracy, chance "
              "= 1 / classes in brackets):", ""]
    for n in names:
        d = vs[n].get("distinctiveness") or {}
        pc, sc = d.get("persona_classifier") or {}, d.get("stage_classifier") or {}
        lines.append(f"- {n}: persona {_f(pc.get('accuracy'))} [{_f(pc.get('chance'))}], "
                     f"stage {_f(sc.get('accuracy'))} [{_f(sc.get('chance'))}]")
    return lines


def plots(out_dir: Path, results: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    vs = results["variants"]
    written = []
    bf_any = [n for n in vs if (vs[n].get("big_five") or {}).get("summary")]
    if bf_any:
        _radar(out_dir / "big_five_radar.png", vs, bf_any)
        written.append("big_five_radar.png")
    metrics_ = [("induction", lambda r: r.get("induction")), ("knowledge", lambda r: r.get("knowledge")),
                ("consistency", lambda r: (r.get("consistency") or {}).get("embedding")),
                ("style", lambda r: (r.get("style") or {}).get("cosine"))]
    for fname, groups, title in (
            ("metrics_bar.png", metrics_, "Judged / similarity metrics (higher is better)"),
            ("distinctiveness.png",
             [(k, (lambda kk: lambda r: ((r.get("distinctiveness") or {}).get(kk) or {}).get("cosine"))(k))
              for k in ("intra", "cross_stage", "inter_persona")],
             "Answer similarity (cosine): intra vs cross-stage vs inter-persona")):
        _bars(out_dir / fname, vs, groups, title)
        written.append(fname)
    return written


def _radar(path: Path, vs: dict, names: list[str]) -> None:
    import math

    import matplotlib.pyplot as plt

    ang = [2 * math.pi * i / 5 for i in range(5)] + [0]
    fig = plt.figure(figsize=(4.2, 4.2), dpi=90)
    ax = fig.add_subplot(111, polar=True)
    tgt = vs[names[0]]["big_five"].get("target")
    if tgt:
        vals = [tgt[t] for t in TRAITS]
        ax.plot(ang, vals + vals[:1], "k--", lw=2, label="target")
    for n in names:
        s = vs[n]["big_five"]["summary"]["expected"]
        vals = [s[t]["mean"] or 0 for t in TRAITS]
        ax.plot(ang, vals + vals[:1], lw=1.5, label=n)
        ax.fill(ang, vals + vals[:1], alpha=0.08)
    ax.set_xticks(ang[:-1], [TRAIT_NAMES[t].capitalize() for t in TRAITS], fontsize=8)
    ax.set_ylim(1, 5)
    ax.legend(loc="lower right", bbox_to_anchor=(1.25, -0.1), fontsize=8)
    ax.set_title("Big Five (IPIP-NEO-120)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _bars(path: Path, vs: dict, groups: list, title: str) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=90)
    width = 0.8 / max(1, len(vs))
    for i, n in enumerate(vs):
        xs, ys, lo, hi = [], [], [], []
        for j, (_, get) in enumerate(groups):
            d = get(vs[n]) or {}
            if d.get("mean") is None:
                continue
            xs.append(j + i * width)
            ys.append(d["mean"])
            lo.append(d["mean"] - d["lo"])
            hi.append(d["hi"] - d["mean"])
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=n)
    ax.set_xticks([j + width * (len(vs) - 1) / 2 for j in range(len(groups))], [g for g, _ in groups])
    ax.set_ylim(0, 1.05)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_outputs(out_dir: Path, results: dict, rows: list[dict], persona) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    from kit.eval.paired import compare_variants

    vs = results["variants"]
    results["baselines"] = {base: {n: compare_variants(r.get("paired") or {}, vs[base].get("paired") or {},
                                                       PAIRED_LOWER_IS_BETTER, seed=results.get("seed", 0))
                                   for n, r in vs.items() if n not in BASELINES}
                            for base in BASELINES if base in vs}
    for other in ("base_brief", "prompted_rag"):  # the other baselines against the prompted one
        if "prompted" in vs and other in vs:
            results["baselines"]["prompted"][other] = compare_variants(
                vs[other].get("paired") or {}, vs["prompted"].get("paired") or {}, PAIRED_LOWER_IS_BETTER,
                seed=results.get("seed", 0))
    results["comparisons"] = results["baselines"].get("prompted", {})
    results["headline"] = {n: headline(r) for n, r in vs.items()}
    results["plots"] = plots(out_dir, results)
    write_jsonl(out_dir / "answers.jsonl", rows)
    atomic_write_json(out_dir / "results.json", results)
    atomic_write_text(out_dir / "report.md", report_md(results, persona))


def load_results(run: str | Path) -> dict:
    p = Path(run)
    p = p / "eval" / "results.json" if (p / "eval" / "results.json").exists() else p / "results.json"
    if not p.exists():
        raise KitError("no eval results", where=str(run), fix="run `perskit eval <recipe>` for this run first")
    return json.loads(p.read_text(encoding="utf-8"))


def compare(runs: list[str]) -> str:
    """Side-by-side headline table of several runs' eval results (Markdown)."""
    cols, heads = [], []
    for r in runs:
        res = load_results(r)
        for n, v in res["variants"].items():
            cols.append(f"{Path(r).name}:{n}")
            heads.append(headline(v))
    keys = list(heads[0]) if heads else []
    lines = ["| metric | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for k in keys:
        arrow = " ↓" if k in LOWER_IS_BETTER else ""
        lines.append(f"| {k}{arrow} | " + " | ".join(_f(h[k]) for h in heads) + " |")
    return "\n".join(lines)
