"""The kit's folders, resolved in one place.

- ``cache_home()``: built models, the llama.cpp converter, installer venvs:
  ``$PERSKIT_HOME``, else ``${XDG_CACHE_HOME:-~/.cache}/perskit`` — the same folder
  ``scripts/install.sh`` uses, so what the installer fetched is found without settings.
- ``data_home()``: user data (chat history): ``$PERSKIT_HOME``, else the platform's data
  folder (platformdirs: ``~/.local/share/perskit`` on Linux, ``~/Library/Application
  Support/perskit`` on macOS, ``%LOCALAPPDATA%\\perskit`` on Windows).

Tests point ``PERSKIT_HOME`` at a temporary folder, which moves both.
"""

from __future__ import annotations

import os
from pathlib import Path


def _override() -> Path | None:
    home = os.environ.get("PERSKIT_HOME")
    return Path(home).expanduser() if home else None


def _default_cache() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "perskit"


def cache_home() -> Path:
    """Where built models and the converter live (see module docstring)."""
    return _override() or _default_cache()


def cache_homes() -> list[Path]:
    """``cache_home()``, then the installer's defaults when ``PERSKIT_HOME`` points elsewhere,
    so what the install scripts fetched there (the converter) is still found; last the plain
    ``~/.cache/perskit`` that installs before ``kit.home`` used whatever XDG said."""
    homes: list[Path] = []
    for h in (cache_home(), _default_cache(), Path.home() / ".cache" / "perskit"):
        if h not in homes:
            homes.append(h)
    return homes


def data_home() -> Path:
    """Where user data (chat history) lives (see module docstring)."""
    over = _override()
    if over is not None:
        return over
    from platformdirs import user_data_path

    return user_data_path("perskit", appauthor=False)
