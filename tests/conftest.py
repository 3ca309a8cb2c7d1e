"""Shared test setup.

- Every test session gets its own PERSKIT_HOME (models cache, chat history), so tests
  never touch the user's real data dir; built models are shared within the session, and
  with ``-n 2`` (pytest-xdist) between its workers (``_share_builds``).
- Threads are pinned to 1: CI has 2 cores and several tests spawn subprocesses.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

REPO = Path(__file__).resolve().parents[1]


def _pin_converter() -> None:
    """The llama.cpp converter was installed into the *installer's* perskit home (CI: an
    empty temporary one). Pin it before the tests swap PERSKIT_HOME, so a fresh machine
    finds it without relying on a developer's ~/.cache/perskit."""
    if os.environ.get("PERSKIT_CONVERTER_DIR"):
        return
    try:
        from kit.errors import KitError
        from kit.export.converter import converter_dir
    except ImportError:
        return
    try:
        os.environ["PERSKIT_CONVERTER_DIR"] = str(converter_dir())
    except KitError:
        pass  # export tests then fail with the one-line "converter not installed" message


def _share_builds(home: Path, tmp_path_factory) -> None:
    """Under pytest-xdist each worker has its own home (chat history, data) but the models it
    builds are the same: ``models/`` and ``chat-tests/`` link to one folder per run, whose
    builders take a file lock and rename finished builds into place (kit.rundir.build_lock)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    shared = tmp_path_factory.getbasetemp().parent / "perskit-shared"  # the run's basetemp
    for name in ("models", "chat-tests"):
        (shared / name).mkdir(parents=True, exist_ok=True)
        (home / name).symlink_to(shared / name, target_is_directory=True)


@pytest.fixture(scope="session", autouse=True)
def perskit_home(tmp_path_factory):
    """Point the kit's home at a temporary folder for the whole session."""
    home = os.environ.get("PERSKIT_TEST_HOME")
    if not home:
        home = str(tmp_path_factory.mktemp("perskit-home"))
        _share_builds(Path(home), tmp_path_factory)
    old = os.environ.get("PERSKIT_HOME")
    _pin_converter()
    os.environ["PERSKIT_HOME"] = home
    yield Path(home)
    if old is None:
        os.environ.pop("PERSKIT_HOME", None)
    else:
        os.environ["PERSKIT_HOME"] = old


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_llama(perskit_home) -> Path:
    from kit.models.resolve import materialize

    return materialize("tiny-llama-spm")


@pytest.fixture(scope="session")
def tiny_qwen2(perskit_home) -> Path:
    from kit.models.resolve import materialize

    return materialize("tiny-qwen2")


@pytest.fixture(scope="session")
def tiny_gemma3(perskit_home) -> Path:
    from kit.models.resolve import materialize

    return materialize("tiny-gemma3")


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600):
    """Run ``perskit`` as a real subprocess (the way a user does)."""
    import subprocess
    import sys

    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "kit", *args], cwd=cwd or REPO, env=e,
                          capture_output=True, text=True, timeout=timeout)


def _uses_module_fixture(item) -> bool:
    defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    return any(d.scope == "module" for chain in defs.values() for d in chain)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    """How ``make test`` (``--dist loadgroup --no-loadscope-reorder``) spreads the suite.

    A module whose tests share a module-scoped fixture (a trained adapter, an exported bundle)
    stays on one worker, so the fixture is built once; every other test is scheduled on its own,
    so the heavy tests of one file (the three recipe dry runs) run on both workers. Slow tests
    go first: a 3-minute test that starts last would leave the other worker idle that long."""
    grouped, slow_modules = set(), set()
    for item in items:
        if _uses_module_fixture(item):
            grouped.add(item.module.__name__)
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
        if item.get_closest_marker("slow"):
            slow_modules.add(item.module.__name__)

    def late(item) -> bool:
        # a grouped module moves as a whole, so its tests stay contiguous and its fixture is
        # built once on a plain (single-process) run as well
        name = item.module.__name__
        return name not in slow_modules if name in grouped else item.get_closest_marker("slow") is None

    items.sort(key=late)  # stable: files and tests keep their order otherwise
