"""The one verdict shape every judge returns and every reader stores."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Verdict:
    """``passed``: the answer stays in character / states the reference / agrees with itself;
    None when the judge call failed (counted, never scored). ``judge`` says who decided
    (``rules`` or ``teacher``) and ``prompt`` keeps the exact judging prompt, if any."""

    passed: bool | None
    score: float | None
    reason: str
    judge: str
    prompt: str | None = None

    @property
    def gave_in(self) -> bool:
        """For an induction verdict: the answer gave in to the attack (a failed verdict)."""
        return self.passed is False

    def as_dict(self) -> dict:
        d = asdict(self)
        d["pass"] = d.pop("passed")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Verdict":
        return cls(passed=d.get("pass"), score=d.get("score"), reason=str(d.get("reason", "")),
                   judge=str(d.get("judge", "?")), prompt=d.get("prompt"))
