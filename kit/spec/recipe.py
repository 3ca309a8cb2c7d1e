"""The recipe spec: ``recipes/*.yaml``. Resolution order: flags > YAML > defaults.

Dotted overrides (``--set train.lora.r=32``) are applied to the raw YAML mapping
before validation, so they are checked exactly like the file itself. The resolved
recipe is written into every run directory (``recipe.resolved.yaml``).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from kit.chat.config import ChatConfig
from kit.construct.config import ConstructConfig
from kit.dpo.config import DpoConfig
from kit.errors import KitError
from kit.eval.config import EvalConfig
from kit.export.config import ExportConfig
from kit.rundir import settings
from kit.spec.base import Strict
from kit.spec.yamlio import load_yaml, override_value, validate
from kit.teachers.config import TeacherConfig
from kit.train.config import TrainConfig

# "construct" is a recipe section name and also a deprecated BaseModel classmethod;
# the field is what users write, so silence pydantic's shadowing warning for it.
warnings.filterwarnings("ignore", message='Field name "construct"', category=UserWarning)


class Recipe(Strict):
    """A recipe: one config section per stage (each defined beside its stage), plus chat."""

    name: str = Field(description="Recipe name; default run folder is runs/<persona>-<name>.")
    persona: str = Field(description="Persona folder (or persona.yaml), relative to the recipe file's project root.")
    teacher: Annotated[TeacherConfig, Field(discriminator="kind")]
    construct: ConstructConfig = Field(default_factory=ConstructConfig)
    train: Annotated[TrainConfig, Field(discriminator="backend")]
    dpo: DpoConfig = Field(default_factory=DpoConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    chat: ChatConfig = Field(default_factory=ChatConfig)

    def section_hash(self, *names: str) -> str:
        """Stable hash of some sections, used to decide whether a stage is up to date (fields at
        their default left out: kit.rundir.settings)."""
        blob = json.dumps({n: settings(getattr(self, n)) if hasattr(getattr(self, n), "model_dump")
                           else getattr(self, n) for n in names}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


class LoadedRecipe(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    spec: Recipe
    path: Path
    root: Path  # paths inside the recipe resolve against this (the project root)

    def persona_path(self) -> Path:
        p = Path(self.spec.persona)
        return p if p.is_absolute() else (self.root / p)

    def resolve_path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.root / p)

    def train_config(self):
        """The ``train`` section with its file fields made absolute (they are relative to
        the project root), checked to exist: what SFT and DPO backends are given."""
        cfg = self.spec.train
        upd = {}
        for field in ("chat_template", "mix_general"):
            value = getattr(cfg, field)
            if value:
                path = self.resolve_path(value)
                if not path.is_file():
                    raise KitError("file not found", where=f"train.{field}={value}", fix="fix the path in the recipe")
                upd[field] = str(path)
        return cfg.model_copy(update=upd)


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (['a','b','c'], parsed value). Values are parsed as YAML scalars."""
    if "=" not in item:
        raise KitError(f"override '{item}' has no '='", where="--set", fix="write --set section.key=value")
    key, raw = item.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise KitError(f"override '{item}' has an empty key", where="--set", fix="write --set section.key=value")
    return parts, override_value(raw)  # bounded like the file: an alias bomb in --set is refused


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    for item in overrides or []:
        parts, value = parse_override(item)
        node = data
        for p in parts[:-1]:
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise KitError(f"cannot set '{item}': '{p}' is not a section", where="--set",
                               fix="check the dotted path against the recipe")
            node = nxt
        node[parts[-1]] = value
    return data


def find_root(recipe_path: Path) -> Path:
    """The project root: the nearest parent holding a personas/ folder, else the recipe's folder."""
    for parent in [recipe_path.parent, *recipe_path.parent.parents]:
        if (parent / "personas").is_dir():
            return parent
    return recipe_path.parent


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> LoadedRecipe:
    path = Path(path)
    data, lines = load_yaml(path, what="recipe")
    if isinstance(data, dict):
        data = apply_overrides(data, overrides or [])
    spec = validate(Recipe, data, path=path, lines=lines)
    root = find_root(path.resolve())
    return LoadedRecipe(spec=spec, path=path.resolve(), root=root)


def dump_resolved(recipe: Recipe) -> str:
    import yaml

    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
