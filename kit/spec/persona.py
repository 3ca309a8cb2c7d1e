"""The persona spec: ``personas/<id>/persona.yaml``.

A persona is either *material-based* (sources split by kind and temporal stage, as
PersLLM) or *trait-only* (just a Big Five profile, as BIG5-CHAT). Both validate here;
every cross-field rule (declared stages, source paths inside the folder, files that
exist) is checked at load time so later stages never meet a half-valid persona.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kit.errors import KitError, raise_all
from kit.spec.yamlio import collect, format_loc, load_yaml, problem_at

ID_RE = r"^[a-z0-9][a-z0-9_-]{0,63}$"
# high/low map to the IPIP 1-5 scale the way BIG5-CHAT's binary levels are usually read.
LEVELS = {"very high": 4.6, "high": 4.2, "medium": 3.0, "low": 1.8, "very low": 1.4}
TRAITS = ("O", "C", "E", "A", "N")
TRAIT_NAMES = {"O": "openness", "C": "conscientiousness", "E": "extraversion",
               "A": "agreeableness", "N": "neuroticism"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class Stage(_Strict):
    id: str = Field(pattern=ID_RE, description="Short stage id used by sources and gold examples.")
    label: str = Field(description="Human label, e.g. 'Young engineer'.")
    period: str = Field(description="When this stage is, e.g. '1961-1969'; used to catch anachronisms.")
    knows: str = Field("", description="What the persona knows at this stage (and what they cannot know yet).")
    feels: str = Field("", description="Mood, preoccupations and stance at this stage.")


class Source(_Strict):
    path: str = Field(description="File path relative to the persona folder (.txt .md .html .pdf .epub).")
    kind: Literal["objective", "subjective"] = Field(
        description="objective = facts/biography about the person; subjective = the person's own words.")
    stage: str = Field(description="Id of the stage this material belongs to.")
    title: str | None = None
    date: str | None = None


class Opinion(_Strict):
    topic: str
    stance: str = Field(description="The persona's view, in one or two sentences.")
    stage: str | None = Field(None, description="Stage the view belongs to (default: all stages).")


Level = Union[float, Literal["very high", "high", "medium", "low", "very low"]]


class BigFive(_Strict):
    O: Level = Field(description="Openness, 1-5 IPIP scale or high/low.")
    C: Level = Field(description="Conscientiousness.")
    E: Level = Field(description="Extraversion.")
    A: Level = Field(description="Agreeableness.")
    N: Level = Field(description="Neuroticism.")

    @field_validator("O", "C", "E", "A", "N")
    @classmethod
    def _range(cls, v):
        if isinstance(v, (int, float)) and not 1.0 <= float(v) <= 5.0:
            raise ValueError("must be between 1 and 5 (IPIP scale) or high/low")
        return v

    def scores(self) -> dict[str, float]:
        """Numeric targets on the 1-5 scale."""
        return {t: float(LEVELS[v]) if isinstance(v, str) else float(v)
                for t, v in ((t, getattr(self, t)) for t in TRAITS)}


GoldType = Literal["ordinary", "opinion", "anti_induction", "trait"]


class GoldExample(_Strict):
    q: str = Field(description="The user's question.")
    a: str = Field(description="The persona's answer, in voice.")
    stage: str | None = Field(None, description="Stage the answer belongs to (default: the last stage).")
    type: GoldType = "ordinary"
    induction: str | None = Field(
        None, description="For anti_induction: false_premise | pressure | identity | anachronism | leading.")


class Persona(_Strict):
    id: str = Field(pattern=ID_RE, description="Folder-safe id, e.g. 'ada-lin'.")
    name: str
    identity: str = Field(description="One paragraph: who this person is.")
    language: str = Field("en", description="BCP-47 language of the persona's answers.")
    style: list[str] = Field(default_factory=list, description="Speaking style notes.")
    stages: list[Stage] = Field(default_factory=list)
    sources: list[Source] = Field(default_factory=list)
    opinions: list[Opinion] = Field(default_factory=list)
    big_five: BigFive | None = None
    gold: list[GoldExample] = Field(default_factory=list)
    boundaries: list[str] = Field(default_factory=list, description="Topics refused or deflected.")

    @model_validator(mode="after")
    def _cross_checks(self, info):
        # load_persona runs these on the raw file itself, to report all of them, one line each
        if not (info.context or {}).get("cross_checked"):
            problems = cross_problems(self.model_dump())
            if problems:
                loc, msg, _ = problems[0]
                raise ValueError(f"{format_loc(loc)}: {msg}" if loc else msg)
        if not self.stages:  # a trait-only persona (one with sources must declare stages)
            self.stages = [Stage(id="present", label="Present day", period="now")]
        return self

    # -- helpers used by every later stage -------------------------------------------------
    @property
    def trait_only(self) -> bool:
        return not self.sources

    def stage(self, stage_id: str | None) -> Stage:
        if stage_id is None:
            return self.stages[-1]
        for s in self.stages:
            if s.id == stage_id:
                return s
        raise KitError(f"unknown stage '{stage_id}'", where=f"persona {self.id}",
                       fix=f"use one of {[s.id for s in self.stages]}")

    def stage_index(self, stage_id: str) -> int:
        return [s.id for s in self.stages].index(stage_id)

    def system_prompt(self, stage_id: str | None = None, *, stage_token: bool = False, brief: bool = False) -> str:
        """The system prompt used in training data, eval, export and chat (one definition).

        ``brief`` keeps only the name, the stage and the in-character rule: a tuned model has
        learned the rest from its data (PersLLM trains with such short prompts), and every
        token not spent on a 500-token persona description is one the CPU need not process
        in training, DPO, eval and chat. The prompted baseline always gets the full text.
        """
        st = self.stage(stage_id)
        if brief:
            text = (f"You are {self.name}. Current life stage: {st.label} ({st.period}).\n"
                    f"Stay in character as {self.name}. Never claim to be an AI or a language model.")
            return f"<TIME-{self.stage_index(st.id) + 1}> " + text if stage_token else text
        lines = [f"You are {self.name}. {self.identity.strip()}"]
        lines.append(f"Current life stage: {st.label} ({st.period}).")
        if st.knows:
            lines.append(f"What you know now: {st.knows.strip()}")
        if st.feels:
            lines.append(f"How you feel now: {st.feels.strip()}")
        if self.style:
            lines.append("Speaking style: " + "; ".join(self.style) + ".")
        lines.append(f"Stay in character as {self.name}. Never claim to be an AI or a language model.")
        text = "\n".join(lines)
        if stage_token:
            text = f"<TIME-{self.stage_index(st.id) + 1}> " + text
        return text


class LoadedPersona(BaseModel):
    """A validated persona plus the folder it came from."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    spec: Persona
    root: Path

    def source_path(self, src: Source) -> Path:
        return (self.root / src.path).resolve()


def cross_problems(data: dict) -> list[tuple[tuple, str, str]]:
    """Rules across fields, checked on the raw mapping so they hold whatever else is wrong.

    Returns (field path, message, fix) triples; values of the wrong type are skipped here, since
    field validation already names them.
    """
    def listed(key):
        value = data.get(key)
        return value if isinstance(value, list) else []

    if not data.get("sources") and data.get("big_five") is None:
        return [((), "empty persona: give sources (material-based) or big_five (trait-only)",
                 "add sources: (with stages:) or a big_five: profile")]
    if not data.get("stages"):
        return [(("stages",), "sources need stages: declare at least one stage",
                 "add a stages: list and give each source one of its ids")] if data.get("sources") else []
    stages = data["stages"]
    if not isinstance(stages, list) or not all(isinstance(s, dict) and isinstance(s.get("id"), str)
                                               for s in stages):
        return []  # field validation names the bad stage; references to it cannot be judged
    ids = [s["id"] for s in stages]
    out = []
    dups = sorted({i for i in ids if ids.count(i) > 1})
    if dups:
        out.append((("stages",), f"duplicate stage id {dups} in {ids}", "give each stage its own id"))
    declared = sorted(set(ids))
    for section in ("sources", "gold", "opinions"):
        for i, item in enumerate(listed(section)):
            stage = item.get("stage") if isinstance(item, dict) else None
            if isinstance(stage, str) and stage not in declared:
                out.append(((section, i, "stage"), f"'{stage[:60]}' is not a declared stage {declared}",
                            "use a declared stage id, or declare this one under stages:"))
    return out


def _source_problem(root: Path, raw: str) -> tuple[str, str] | None:
    """Why the source path ``raw`` cannot be used, as (message, fix), or None."""
    try:
        p = (root / raw).resolve()  # follows symlinks, so one pointing outside is caught too
        if Path(raw).is_absolute() or not p.is_relative_to(root):
            return (f"'{raw}' escapes the persona folder",
                    "keep source files inside the persona folder and use a relative path")
        if p.exists() and not p.is_file():
            return f"'{raw}' is not a regular file", "point at a file, not a folder"
        if not p.is_file():
            return (f"source file '{raw}' not found",
                    "create the file or correct the path (relative to the persona folder)")
    except (OSError, ValueError, RuntimeError) as exc:  # NUL byte, name too long, symlink loop
        return f"'{raw[:80]}' is not a usable path ({type(exc).__name__})", "use a plain relative file path"
    return None


def source_problems(data: dict, *, path: Path, lines: dict, root: Path,
                    read: Callable[[Path], object] | None = None) -> list[KitError]:
    """Every unusable source: outside the folder, missing, or (with ``read``) unreadable."""
    out: list[KitError] = []
    sources = data.get("sources")
    for i, src in enumerate(sources if isinstance(sources, list) else []):
        raw = src.get("path") if isinstance(src, dict) else None
        if not isinstance(raw, str):
            continue  # field validation names it
        bad = _source_problem(root, raw)
        if bad:
            out.append(problem_at(path, ("sources", i, "path"), lines, *bad))
        elif read is not None:
            try:
                read((root / raw).resolve())
            except KitError as exc:  # named as the user wrote it, beside the spec
                out.append(KitError(exc.message, where=path.parent / raw, fix=exc.fix))
    return out


def load_persona(path: str | Path, *, read: Callable[[Path], object] | None = None) -> LoadedPersona:
    """Load ``persona.yaml`` (or a folder holding one), validating everything.

    ``read`` (e.g. the ingest stage's ``read_source``) is called on every usable source so
    that a file construction could not read is reported now. Every problem found is raised
    together, one line each (KitErrors, exit 2); never returns a partial persona.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "persona.yaml"
    data, lines = load_yaml(path, what="persona spec")
    spec, problems = collect(Persona, data, path=path, lines=lines, context={"cross_checked": True})
    problems += [problem_at(path, loc, lines, msg, fix) for loc, msg, fix in cross_problems(data)]
    root = path.parent.resolve()
    problems += source_problems(data, path=path, lines=lines, root=root, read=read)
    raise_all(problems)
    return LoadedPersona(spec=spec, root=root)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:64] or "persona"
