"""``perskit chat <bundle or gguf>``: chat with a persona offline in the terminal.

    perskit chat export/ada-lin/
    perskit chat export/ada-lin/ --stage apprentice --with export/tomas-reyes/
    perskit chat model.gguf --system "You are Ada." --template tpl.jinja
"""

from __future__ import annotations

from pathlib import Path

import click


def open_persona(path: str, *, quant: str | None, system: str | None, template: str | None,
                 lora: str | None, n_ctx: int | None, threads: int | None, gpu_layers: int = 0):
    """(bundle, engine) for a bundle folder or a bare GGUF; shared by chat and serve."""
    from kit.engine.bundle import load_bundle
    from kit.errors import KitError

    tpl = None
    if template:
        tp = Path(template)
        if not tp.is_file():
            raise KitError("template file not found", where=tp, fix="pass a jinja chat template file")
        tpl = tp.read_text(encoding="utf-8")
    bundle = load_bundle(path, quant=quant, system=system, template=tpl)
    n_ctx = n_ctx or int(bundle.sampling.get("n_ctx", 2048))  # the recipe's chat.n_ctx travels in the bundle
    return bundle, bundle.open_engine(n_ctx=n_ctx, lora=lora, n_threads=threads, n_gpu_layers=gpu_layers)


# Chat-time retrieval from the bundle's index (kit/chat/lore.py), for chat and serve.
RETRIEVE = click.option("--retrieve", type=click.IntRange(0, 16), default=None,
                        help="Add the K passages of the persona's own materials that best match each user turn "
                             "(bounded by the life stage) to the system prompt; 0 = off (default: the bundle's "
                             "chat.retrieve).")

# llama.cpp GPU offload for chat and serve; a CPU-only llama-cpp-python build ignores it.
GPU_LAYERS = click.option("--n-gpu-layers", "gpu_layers", type=int, default=0, show_default=True,
                          envvar="PERSKIT_N_GPU_LAYERS",
                          help="Layers offloaded to the GPU (-1 = all; needs llama-cpp-python built with "
                               "CUDA or Metal). Env: PERSKIT_N_GPU_LAYERS.")


@click.command("chat")
@click.argument("bundle", type=click.Path())
@click.option("--stage", default=None, help="Life stage to start in (default: the bundle's default stage).")
@click.option("--quant", default=None, help="Which GGUF of the bundle (default: Q4_K_M, else the best present).")
@click.option("--system", default=None, help="System prompt (bare GGUF; overrides a bundle's stage prompts).")
@click.option("--template", type=click.Path(dir_okay=False), default=None,
              help="Jinja chat template file (default: the bundle's, else the GGUF's own).")
@click.option("--lora", type=click.Path(dir_okay=False), default=None, help="Apply a LoRA GGUF to the model.")
@click.option("--with", "others", multiple=True,
              help="Another persona for multi-agent mode (/agents): a bundle folder, a .gguf, or NAME=LORA.gguf "
                   "(this model plus a LoRA adapter); repeatable.")
@click.option("--n-ctx", type=int, default=None, help="Context window in tokens (default: the bundle's, else 2048).")
@click.option("--threads", type=int, default=None, help="CPU threads for llama.cpp.")
@GPU_LAYERS
@click.option("--temperature", type=float, default=None, help="Override the bundle's sampling temperature.")
@click.option("--max-tokens", type=int, default=None, help="Override the bundle's longest reply.")
@click.option("--open", "open_id", type=int, default=None, help="Reopen saved conversation N.")
@click.option("--prompt", "prompt", default=None,
              help="Ask one question, print the streamed reply and exit (no TUI; for scripts and quick checks).")
@RETRIEVE
def command(bundle, stage, quant, system, template, lora, others, n_ctx, threads, gpu_layers, temperature, max_tokens,
            open_id, prompt, retrieve):
    """Open the chat TUI on a persona bundle folder (or a bare GGUF)."""
    from kit.errors import KitError, require

    if prompt is not None:
        return ask_once(bundle, prompt, stage=stage, quant=quant, system=system, template=template, lora=lora,
                        n_ctx=n_ctx, threads=threads, gpu_layers=gpu_layers, temperature=temperature,
                        max_tokens=max_tokens, retrieve=retrieve)
    require("textual", "tui", "perskit chat")
    from kit.chat.multiagent import Agent
    from kit.chat.session import ChatSession, PersonaView
    from kit.chat.store import HistoryStore

    b, engine = open_persona(bundle, quant=quant, system=system, template=template, lora=lora, n_ctx=n_ctx,
                             threads=threads, gpu_layers=gpu_layers)
    persona = PersonaView.from_bundle(b)
    if stage is not None:
        b.stage(stage)  # KitError naming the valid stages
    from kit.tui.app import ChatApp  # Textual loads only once the bundle and the model have opened
    # The recipe's chat sampling travels in the bundle; flags override it.
    params = b.gen_params(temperature=temperature, max_tokens=max_tokens)
    n_ctx = engine.n_ctx
    agents = []
    for other in others:
        name, sep, adapter = other.partition("=")
        if sep and adapter.lower().endswith(".gguf"):
            # One base + LoRA adapters: the same GGUF with another persona's adapter applied.
            oeng = b.open_engine(n_ctx=n_ctx, lora=adapter, n_threads=threads, n_gpu_layers=gpu_layers)
            agents.append(Agent(name, oeng, f"You are {name}.", name.lower().replace(" ", "-")))
            continue
        ob, oeng = open_persona(other, quant=None, system=None, template=None, lora=None, n_ctx=n_ctx, threads=threads,
                                gpu_layers=gpu_layers)
        agents.append(Agent(ob.name, oeng, ob.stage(None).system_prompt, ob.persona_id, PersonaView.from_bundle(ob)))
    store = HistoryStore()
    from kit.chat.lore import Lore

    session = ChatSession(persona, engine, store, params=params, n_ctx=n_ctx, stage=stage or b.default_stage,
                          lore=Lore.for_bundle(b, retrieve))
    if open_id is not None:
        if store.conversation(open_id) is None:
            raise KitError(f"no saved conversation #{open_id}", where=store.path, fix="omit --open or pick an id from the sidebar")
        session.load(open_id)
    try:
        ChatApp(session, agents=agents).run()
    finally:
        for a in agents:
            a.engine.close()
        engine.close()
        store.close()


def ask_once(path: str, prompt: str, *, stage: str | None, temperature: float | None, max_tokens: int | None,
             retrieve: int | None = None, **open_kw) -> None:
    """One question, one streamed reply on stdout, with the same prompt and sampling as the TUI
    (and the same retrieval: the passages used are listed on stderr)."""
    from kit.chat.context import token_counter
    from kit.chat.lore import Lore
    from kit.chat.session import turn_messages

    b, engine = open_persona(path, **open_kw)
    try:
        params = b.gen_params(temperature=temperature, max_tokens=max_tokens)
        st = b.stage(stage)
        messages, used = turn_messages(st.system_prompt, [{"role": "user", "content": prompt}], st.id,
                                       Lore.for_bundle(b, retrieve), engine.n_ctx, token_counter(engine))
        for i, p in enumerate(used or [], 1):
            click.echo(f"[{i}] {p.get('source', '')} ({p.get('stage', '')}): {p['text'][:80]}...", err=True)
        for piece in engine.stream(messages, params):
            click.echo(piece, nl=False)
        click.echo()
    finally:
        engine.close()
