"""User-facing errors: one line, naming the file/field and the fix, exit code 2."""

from __future__ import annotations

from pathlib import Path


class KitError(Exception):
    """An error caused by the user's input or environment, shown as a single line.

    ``where`` names the file (and field/line when known); ``fix`` says what to do.
    The CLI prints ``perskit: error: <where>: <message> (fix: <fix>)`` and exits 2,
    never a traceback.
    """

    exit_code = 2

    def __init__(self, message: str, *, where: str | Path | None = None, fix: str | None = None):
        self.message = message
        self.where = str(where) if where is not None else None
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        parts = []
        if self.where:
            parts.append(f"{self.where}: ")
        parts.append(self.message.replace("\n", " ").strip())
        if self.fix:
            parts.append(f" (fix: {self.fix.strip()})")
        return "".join(parts)


class MissingExtra(KitError):
    """A verb needs an optional dependency group that is not installed."""

    def __init__(self, module: str, extra: str, what: str):
        super().__init__(
            f"{what} needs the Python module '{module}', which is not installed",
            fix=f"pip install 'perskit[{extra}]' (or run scripts/install.sh)",
        )


def require(module: str, extra: str, what: str):
    """Import ``module`` or raise a one-line MissingExtra naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingExtra(module, extra, what) from exc
