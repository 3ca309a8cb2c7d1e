"""Report sections that say what the numbers are worth: verdicts, judge calibration, what was
held out, and whether the Big Five instrument can be read at all."""

from __future__ import annotations

from kit.spec.persona import TRAIT_NAMES, TRAITS


def _f(x, nd: int = 2) -> str:
    return "–" if x is None else f"{x:.{nd}f}"


_BASE_WORDS = {"prompted": "the prompted base (full description)",
               "base_brief": "the base model under the brief prompt",
               "prompted_rag": "the prompted base with retrieved passages (the retrieval baseline)"}


def verdict_section(results: dict) -> list[str]:
    by_base = results.get("baselines") or {"prompted": results.get("comparisons") or {}}
    lines: list[str] = []
    for base, comps in by_base.items():
        if comps:
            lines += _verdict_table(base, comps)
    if "placebo" in (results.get("comparisons") or {}):
        bad = [r["metric"] for r in results["comparisons"]["placebo"] if r["verdict"] in ("better", "worse")]
        lines += [f"Placebo control (prompted again, another seed): "
                  + ("no detectable difference on every metric." if not bad else
                     f"**failed** on {', '.join(bad)} — the verdicts above are not trustworthy."), ""]
    return lines


def _verdict_table(base: str, comps: dict) -> list[str]:
    lines = [f"## Verdicts: each variant against {_BASE_WORDS.get(base, base)}, paired on the same items", "",
             "| metric | variant | n | difference [95% CI] | p (Holm) | detectable at this n | verdict |",
             "|---|---|---|---|---|---|---|"]
    for name, rows in comps.items():
        for r in rows:
            diff = "–" if r["diff"] is None else (
                f"{r['diff']:+.2f} [{_f(r['lo'])}, {_f(r['hi'])}]" if r["lo"] is not None else f"{r['diff']:+.2f}")
            lines.append(f"| {r['metric']} | {name} | {r['n']} | {diff} | {_f(r.get('p_adj'), 3)} | "
                         f"±{_f(r['mdd'])} | {r['verdict']} |")
    return lines + ["", f"Difference = variant − {base} (for big_five_item_error and voice_nll lower is better). "
                    "Verdicts need a bootstrap CI that excludes 0 and a sign-flip permutation p < 0.05 after Holm "
                    "correction over the metrics of one variant. \"Detectable at this n\" is the smallest true "
                    "difference found with 80% power at the observed spread of the paired differences.", ""]


def calibration_section(cal: dict | None) -> list[str]:
    if not cal:
        return ["## Judge calibration", "", "Not measured (eval.calibrate: false).", ""]
    lines = ["## Judge calibration", "",
             f"Agreement with human labels on {cal['items']} answers written for calibration (`{cal['set']}`): "
             "accuracy and Cohen's κ per task"
             + (f" (the model judge on a stratified {cal['model_items']} of them: eval.calibrate_items)"
                if cal.get("model_items", cal["items"]) < cal["items"] else "") + ".", "",
             "| judge | task | n | accuracy | κ | false pass | false fail |", "|---|---|---|---|---|---|---|"]
    for who, key in (("rule layer", "rules"), (f"model judge ({cal.get('model_label', '')})", "model")):
        for task, r in (cal.get(key) or {}).items():
            lines.append(f"| {who} | {task} | {r['n']} | {_f(r['accuracy'])} | {_f(r['kappa'])} | "
                         f"{r['false_pass']} | {r['false_fail']} |")
    if "model" not in cal:
        lines += ["", "Only the rule layer judged this run (no model judge)."]
        return lines + [""]
    return lines + [""] + _model_judge_notes(cal) + [""]


def _model_judge_notes(cal: dict) -> list[str]:
    """What the model judge adds over its rule layer, in words."""
    rules, model = cal.get("rules") or {}, cal["model"]
    out = []
    a = model.get("all") or {}
    if a.get("asked"):
        out.append(f"The model judge said pass to {a['asked_passed']} of the {a['asked']} answers it was asked "
                   "about (the other calibration answers were decided by rule vetoes without asking it).")
    worse = [t for t, r in model.items() if t != "all" and r.get("kappa") is not None
             and (rules.get(t) or {}).get("kappa") is not None and r["kappa"] < rules[t]["kappa"]]
    if worse:
        out.append(f"**The rule layer alone agrees with the labels better than the model judge on "
                   f"{', '.join(worse)}**: read the judged rates with that in mind, or use a stronger judge "
                   "(eval.judge_model) or eval.judge: heuristic.")
    return out


def held_out_section(h: dict | None) -> list[str]:
    if not h:
        return []
    src = ", ".join(f"{k} {v}" for k, v in sorted(h.get("by_source", {}).items()))
    return ["## Held out", "",
            f"Split **{h['split']}**: {h['used']} of {h['held_out']} held-out questions ({src}); "
            f"{h['dev_share']:.0%} of them form the dev split for tuning, never reported. {h['rule']}.", ""]


def big_five_section(vs: dict, names: list[str], interpretable: bool) -> list[str]:
    first = next((vs[n]["big_five"] for n in names if vs[n].get("big_five")), None)
    if not first:
        return []
    tgt = first.get("target") or {}
    val = (vs.get("prompted", {}).get("big_five") or {}).get("validity")
    measure = "agreement with first-person statements" if first["mode"] == "statement" else "Likert digits"
    lines = [f"## Big Five (IPIP-NEO-120, {measure})", "", _validity_line(val, interpretable), "",
             "| domain | target | " + " | ".join(f"{n} (EV ± spread)" for n in names) + " |",
             "|---|---|" + "---|" * len(names)]
    for t in TRAITS:
        cells = []
        for n in names:
            s = (vs[n].get("big_five") or {}).get("summary", {}).get("expected", {}).get(t, {})
            cells.append(f"{_f(s.get('mean'))} ± {_f(s.get('spread'))}")
        lines.append(f"| {TRAIT_NAMES[t]} | {_f(tgt.get(t))} | " + " | ".join(cells) + " |")
    how = ("reply frames Yes/No, I agree/disagree, That is true/false; score 1 + 4·P(agree), the model's "
           "mean agreement is the bias null" if first["mode"] == "statement" else
           "cyclic option orders, reworded instructions")
    lines += ["", f"Items: {first['n_items']}, administrations per variant: {len(first['variants'])} "
              f"({how}; spread = max − min over administrations). Scoring mode: {first['mode']}.", "",
              "| variant | MAE to target | constant 3 | uniform random [95%] | position / yes bias | mass on answer tokens |",
              "|---|---|---|---|---|---|"]
    for n in names:
        bf = vs[n].get("big_five") or {}
        nulls = bf.get("nulls") or {}
        ur = nulls.get("uniform_random") or {}
        mae = _f((bf.get("error_expected") or {}).get("mae")) if interpretable else "not interpretable"
        lines.append(f"| {n} | {mae} | {_f(nulls.get('constant_3'))} | {_f(ur.get('mae'))} "
                     f"[{_f(ur.get('lo'))}, {_f(ur.get('hi'))}] | {_f(nulls.get('position_bias'))} | "
                     f"{_f(bf.get('label_mass'))} |")
    return lines + [""]


def _validity_line(val: dict | None, interpretable: bool) -> str:
    if not val:
        return ("**Not interpretable at this size**: no known-groups check was possible (no contrast persona "
                "with a Big Five target), so no MAE is reported.")
    doms = "; ".join(f"{TRAIT_NAMES[t]} target gap {d['target_gap']:+.1f}, moved {_f(d['moved']['mean'])} "
                     f"[{_f(d['moved']['lo'])}, {_f(d['moved']['hi'])}]" for t, d in val["domains"].items())
    head = ("Known-groups check passed" if interpretable else
            "**Not interpretable at this size**: the known-groups check failed")
    return (f"{head} (prompted base model as this persona vs {val['other']}; every domain whose targets differ "
            f"by ≥ {val['min_gap']} must move that way, item-bootstrap CI above 0): {doms or val['note']}.")
