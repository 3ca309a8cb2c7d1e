"""Retrieval at chat time: the persona's own passages for the latest user turn, in the system prompt.

Opt-in (``perskit chat/serve --retrieve K``, or ``chat.retrieve`` in the recipe, which travels in
the bundle). The bundle's ``index/`` is searched offline; a stage sees only its own and earlier
stages' material, so a switch to an earlier stage narrows what can be retrieved. The passages
are cut to a share of the context window so the conversation keeps its room.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from kit.retrieval import PASSAGES_HEADER as HEADER
from kit.retrieval import with_passages

CONTEXT_SHARE = 0.4  # of n_ctx, at most, for the system prompt with its passages


@dataclass
class Lore:
    retriever: object  # kit.retrieval.Retriever over the bundle's index
    k: int
    stage_order: list[str]  # stage ids in life order: the bound for each stage
    persona_id: str | None = None  # whose index this is: another persona in the same chat gets none of it
    last: list[dict] = field(default_factory=list)  # passages the latest call used (--prompt lists them)
    last_ms: float = 0.0  # how long the lookup took

    @classmethod
    def for_bundle(cls, bundle, k: int | None) -> "Lore | None":
        """``k`` passages a turn from the bundle's index (None: the bundle's own ``chat.retrieve``);
        None when that is 0."""
        from kit.errors import KitError
        from kit.retrieval import Retriever

        k = bundle.sampling.get("retrieve", 0) if k is None else k
        if not k:
            return None
        if bundle.index_dir is None:
            raise KitError("this bundle has no passage index", where=bundle.root,
                           fix="re-export it with export.index: true, or drop --retrieve")
        return cls(Retriever.load(bundle.index_dir), k, [s.id for s in bundle.stages], bundle.persona_id)

    def lookup(self, query: str, stage_id: str) -> list[dict]:
        bound = self.stage_order.index(stage_id) if stage_id in self.stage_order else len(self.stage_order) - 1
        t0 = time.perf_counter()
        self.last = self.retriever.top_k(query, self.k, bound) if query.strip() else []
        self.last_ms = (time.perf_counter() - t0) * 1000
        return self.last

    def pick(self, base: str, query: str, stage_id: str, n_ctx: int, count) -> tuple[str, list[dict]]:
        """(``base`` with the top-K passages for ``query`` appended, the passages used), within the
        context budget (``count`` counts the tokens of a message list). The TUI's status line asks
        for the same prompt while a reply starts, so the caller keeps the returned list rather
        than reading ``last`` afterwards."""
        passages = self.lookup(query, stage_id)
        budget = int(n_ctx * CONTEXT_SHARE)
        used: list[dict] = []
        for p in passages:
            if count([{"role": "system", "content": with_passages(base, used + [p])}]) > budget:
                break
            used.append(p)
        self.last = used
        return with_passages(base, used), used

    def system(self, base: str, query: str, stage_id: str, n_ctx: int, count) -> str:
        """``base`` with the passages that fit appended (see ``pick``)."""
        return self.pick(base, query, stage_id, n_ctx, count)[0]


def shown(passages: list[dict], words: int = 12) -> list[dict]:
    """Passages for display: id, stage, source and the first ``words`` words."""
    return [{"id": p["id"], "stage": p.get("stage", ""), "source": p.get("source", ""),
             "excerpt": excerpt(p["text"], words)} for p in passages]


def excerpt(text: str, words: int = 12) -> str:
    parts = text.split()
    return " ".join(parts[:words]) + (" ..." if len(parts) > words else "")
