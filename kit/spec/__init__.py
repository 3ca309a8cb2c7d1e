"""Typed specs: the persona (who) and the recipe (how), loaded from YAML."""
