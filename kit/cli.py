"""The ``perskit`` command: a tiny dispatcher that imports only the chosen verb.

Each verb lives in ``kit/commands/<verb>.py`` and exposes a click command named
``command``. Errors the user can fix (``KitError``) print one line and exit 2.
"""

from __future__ import annotations

import importlib
import sys

import click

VERBS = {
    "init": "Scaffold a persona folder with commented examples.",
    "persona": "Persona tools (validate).",
    "doctor": "Show which extras, backends and devices are present.",
    "construct": "Build personified training data from a persona's materials.",
    "train": "Personified SFT (LoRA/QLoRA) on trl, unsloth or mlx.",
    "dpo": "Mine preference pairs automatically and run DPO.",
    "eval": "Evaluate trained vs prompted personas (Big Five, induction, ...).",
    "export": "Merge, convert to GGUF, quantize and bundle a persona.",
    "chat": "Chat with a persona offline in the terminal.",
    "serve": "Serve a persona over an OpenAI-compatible API.",
    "run": "Run the whole recipe: construct, train, dpo, eval, export.",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(VERBS)

    def get_command(self, ctx, name):
        if name not in VERBS:
            return None
        try:
            module = importlib.import_module(f"kit.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"kit.commands.{name}":
                raise
            from kit.errors import KitError

            raise KitError(f"'{name}' is not available in this build", where=f"perskit {name}",
                           fix="update perskit") from None
        return module.command

    def format_commands(self, ctx, formatter):
        # List verbs from the table so `perskit --help` imports no verb module.
        with formatter.section("Commands"):
            formatter.write_dl([(n, h) for n, h in VERBS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="perskit", prog_name="perskit")
def cli():
    """perskit: turn a person's materials into a local persona model, then chat with it offline."""


def quiet_third_party() -> None:
    """Keep a run log readable: libraries' FutureWarnings and advisory logs say nothing the
    user can act on, and carriage-return progress bars turn a file or CI log into one
    unreadable line. Set before any stage imports them; stage subprocesses inherit the
    environment. PERSKIT_VERBOSE=1 keeps everything."""
    import os
    import warnings

    if os.environ.get("PERSKIT_VERBOSE"):
        return
    for category in (FutureWarning, DeprecationWarning, PendingDeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning,ignore::DeprecationWarning")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not sys.stderr.isatty():  # a file or CI log: our own one-line-per-step progress only
        for key in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS"):
            os.environ.setdefault(key, "1")


def main(argv: list[str] | None = None) -> int:
    from kit.errors import KitError

    quiet_third_party()
    try:
        cli.main(args=argv, prog_name="perskit", standalone_mode=False)
    except KitError as exc:
        for line in exc.lines():  # several problems found in one pass: one line each
            click.echo(f"perskit: error: {line}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("perskit: interrupted; finished work is saved, rerun the same command to resume", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("perskit: interrupted; finished work is saved, rerun the same command to resume", err=True)
        return 130
    except click.ClickException as exc:
        click.echo(f"perskit: error: {exc.format_message()}", err=True)
        return 2
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
