"""Render the eval prompt templates (``kit/prompts/eval_*.j2``) with the one shared renderer."""

from kit.templating import render

__all__ = ["render"]
