"""Metrics computed from answers (pure functions: answers and verdicts in, numbers out).

``embed_fn`` maps a list of texts to unit-norm row vectors; the runner passes the MiniLM
embedder, unit tests pass a bag-of-words one whose cosines are known by hand.
"""

from __future__ import annotations

from kit.eval.similarity import (bootstrap_ci, classifier_accuracy, cosine_matrix, mean_pairwise,
                                 sentence_bleu)


def rate(verdicts: list[dict], seed: int = 0) -> dict:
    """Share of verdicts that pass, with a bootstrap CI; judge failures are counted, not scored."""
    vals = [1.0 if v["pass"] else 0.0 for v in verdicts if v.get("pass") is not None]
    out = bootstrap_ci(vals, seed=seed)
    out["judge_failed"] = sum(v.get("pass") is None for v in verdicts)
    return out


def induction_resistance(verdicts: list[dict], seed: int = 0) -> dict:
    return rate(verdicts, seed)


def knowledge(verdicts: list[dict], seed: int = 0) -> dict:
    out = rate(verdicts, seed)
    scores = [v["score"] for v in verdicts if v.get("score") is not None]
    out["mean_score"] = sum(scores) / len(scores) if scores else None
    return out


def consistency(groups: list[list[str]], verdicts: list[dict], embed_fn, seed: int = 0) -> dict:
    """Per question: mean pairwise embedding cosine of the answers to its k paraphrases.
    Reported as the mean over questions (bootstrap CI) plus the judge's agreement rate."""
    per_q = []
    for answers in groups:
        if len(answers) < 2:
            continue
        v = embed_fn(answers)
        per_q.append(mean_pairwise(cosine_matrix(v, v), list(range(len(answers)))))
    return {"embedding": bootstrap_ci(per_q, seed=seed), "judge": rate(verdicts, seed),
            "per_question": per_q}


def distinctiveness(answers: list[dict], embed_fn, seed: int = 0) -> dict:
    """Separation of greedy answers to the same questions, each asked in several wordings.

    ``answers``: ``{"qid", "persona", "stage", "wording", "text"}``. Per question: intra =
    mean cosine between one (persona, stage)'s answers to different wordings; cross-stage =
    between this persona's stages; inter = between personas. The gaps intra − inter and
    intra − cross-stage (per question, so they pair across variants) say whether personas and
    stages are told apart beyond rewording; above 0 = separated. Classifiers report balanced
    accuracy against chance = 1 / classes.
    """
    if not answers:
        return {"n": 0}
    vecs = embed_fn([a["text"] for a in answers])
    sim = cosine_matrix(vecs, vecs)
    pairs: dict = {"intra": [], "cross_stage": [], "inter_persona": []}
    per_q: dict = {}
    for i in range(len(answers)):
        for j in range(i + 1, len(answers)):
            a, b = answers[i], answers[j]
            if a["qid"] != b["qid"]:
                continue
            if a["persona"] != b["persona"]:
                kind = "inter_persona"
            elif a["stage"] != b["stage"]:
                kind = "cross_stage"
            elif a.get("wording") != b.get("wording"):
                kind = "intra"
            else:
                continue
            bleu = (sentence_bleu(a["text"], [b["text"]]) + sentence_bleu(b["text"], [a["text"]])) / 2
            pairs[kind].append((float(sim[i, j]), bleu))
            per_q.setdefault(a["qid"], {}).setdefault(kind, []).append(float(sim[i, j]))
    out: dict = {"n": len(answers)}
    for kind, vals in pairs.items():
        out[kind] = {"cosine": bootstrap_ci([c for c, _ in vals], seed=seed),
                     "bleu": bootstrap_ci([b for _, b in vals], seed=seed), "pairs": len(vals)}
    avg = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    for gap, other in (("persona_gap", "inter_persona"), ("stage_gap", "cross_stage")):
        vals = {q: avg(d["intra"]) - avg(d[other]) for q, d in per_q.items() if d.get("intra") and d.get(other)}
        out[gap] = {**bootstrap_ci(list(vals.values()), seed=seed), "per_question": vals}
    out["persona_classifier"] = classifier_accuracy(vecs, [a["persona"] for a in answers], seed=seed)
    main = answers[0]["persona"]
    own = [k for k, a in enumerate(answers) if a["persona"] == main]
    out["stage_classifier"] = classifier_accuracy(vecs[own], [answers[k]["stage"] for k in own], seed=seed)
    return out


def style(answers: list[str], passages: list[str], embed_fn, seed: int = 0) -> dict:
    """How close answers are to the persona's own (subjective) writing: per answer, the best
    cosine to any passage and the BLEU against all passages as references."""
    if not answers or not passages:
        return {"cosine": bootstrap_ci([]), "bleu": bootstrap_ci([]), "passages": len(passages)}
    a = embed_fn(answers)
    p = embed_fn(passages)
    best = cosine_matrix(a, p).max(axis=1).tolist()
    bleu = [sentence_bleu(x, passages) for x in answers]
    return {"cosine": bootstrap_ci(best, seed=seed), "bleu": bootstrap_ci(bleu, seed=seed),
            "passages": len(passages), "per_answer": best}
