"""The persona spec: ``personas/<id>/persona.yaml``.

A persona is either *material-based* (sources split by kind and temporal stage, as
PersLLM) or *trait-only* (just a Big Five profile, as BIG5-CHAT). Both validate here;
every cross-field rule (declared stages, source paths inside the folder, files that
exist) is checked at load time so later stages never meet a half-valid persona.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kit.errors import KitError
from kit.spec.yamlio import load_yaml, validate

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
    def _cross_checks(self):
        if not self.sources and self.big_five is None:
            raise ValueError("empty persona: give sources (material-based) or big_five (trait-only)")
        if not self.stages:
            if self.sources:
                raise ValueError("sources need stages: declare at least one stage")
            self.stages = [Stage(id="present", label="Present day", period="now")]
        ids = [s.id for s in self.stages]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate stage id in {ids}")
        declared = set(ids)
        for i, src in enumerate(self.sources):
            if src.stage not in declared:
                raise ValueError(f"sources[{i}].stage '{src.stage}' is not a declared stage {sorted(declared)}")
        for i, g in enumerate(self.gold):
            if g.stage is not None and g.stage not in declared:
                raise ValueError(f"gold[{i}].stage '{g.stage}' is not a declared stage {sorted(declared)}")
        for i, o in enumerate(self.opinions):
            if o.stage is not None and o.stage not in declared:
                raise ValueError(f"opinions[{i}].stage '{o.stage}' is not a declared stage {sorted(declared)}")
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


def load_persona(path: str | Path) -> LoadedPersona:
    """Load ``persona.yaml`` (or a folder holding one), validating everything.

    Raises KitError (one line, exit 2) on any problem; never returns a partial persona.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "persona.yaml"
    data, lines = load_yaml(path, what="persona spec")
    spec = validate(Persona, data, path=path, lines=lines)
    root = path.parent.resolve()
    for i, src in enumerate(spec.sources):
        p = (root / src.path).resolve()
        line = lines.get(("sources", i, "path"))
        where = f"{path}: sources[{i}].path" + (f" (line {line})" if line else "")
        if Path(src.path).is_absolute() or not p.is_relative_to(root):
            raise KitError(f"'{src.path}' escapes the persona folder", where=where,
                           fix="keep source files inside the persona folder and use a relative path")
        if not p.is_file():
            raise KitError(f"source file '{src.path}' not found", where=where,
                           fix="create the file or correct the path (relative to the persona folder)")
    return LoadedPersona(spec=spec, root=root)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:64] or "persona"
