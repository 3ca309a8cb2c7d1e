"""User-facing errors: one line, naming the file/field and the fix, exit code 2."""

from __future__ import annotations

from pathlib import Path


_ONE_LINE = {ord(c): " " for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


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
        parts.append(self.message.strip())
        if self.fix:
            parts.append(f" (fix: {self.fix.strip()})")
        # every character str.splitlines() breaks at, so a key or value quoted from a
        # user's file can never split the line
        return "".join(parts).translate(_ONE_LINE)

    def lines(self) -> list[str]:
        """One line per problem (a plain KitError is one problem); the CLI prints each."""
        return [self.one_line()]


class KitErrors(KitError):
    """Several independent problems found in one pass, so the user fixes them all at once.

    ``message`` (and so ``str()``) joins them into one line for code that shows a single
    line (a wrapped error, a server reply); the CLI prints ``lines()``, one per problem.
    """

    def __init__(self, problems: list[KitError]):
        self.problems = [q for p in problems for q in (p.problems if isinstance(p, KitErrors) else [p])]
        super().__init__("; ".join(p.one_line() for p in self.problems))

    def lines(self) -> list[str]:
        return [p.one_line() for p in self.problems]


def raise_all(problems: list[KitError]) -> None:
    """Raise nothing, the one problem, or all of them together."""
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise KitErrors(problems)


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
