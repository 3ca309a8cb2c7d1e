"""The one strict base for every config and spec section: unknown keys are errors, so a
typo in a recipe names its exact path instead of being silently ignored."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
