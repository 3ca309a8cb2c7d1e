"""``perskit serve <bundle>...``: an OpenAI-compatible API for companion apps.

    perskit serve export/ada-lin/ --port 8000 --api-key secret
    curl http://127.0.0.1:8000/v1/chat/completions -H 'Authorization: Bearer secret' \\
      -d '{"model": "ada-lin:young", "messages": [{"role": "user", "content": "Hi"}]}'
"""

from __future__ import annotations

import os

import click

from kit.commands.chat import GPU_LAYERS


@click.command("serve")
@click.argument("bundles", nargs=-1, required=True, type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (loopback keeps it local).")
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--api-key", default=None, help="Require this bearer key (default: $PERSKIT_API_KEY, else none).")
@click.option("--quant", default=None, help="Which GGUF of each bundle (default: Q4_K_M, else the best present).")
@click.option("--system", default=None, help="System prompt for a bare GGUF.")
@click.option("--template", type=click.Path(dir_okay=False), default=None, help="Jinja chat template file.")
@click.option("--n-ctx", type=int, default=2048, show_default=True)
@click.option("--threads", type=int, default=None, help="CPU threads for llama.cpp.")
@GPU_LAYERS
@click.option("--max-tokens", type=int, default=256, show_default=True, help="Default reply length.")
def command(bundles, host, port, api_key, quant, system, template, n_ctx, threads, gpu_layers, max_tokens):
    """Serve persona bundles (or a bare GGUF) on /v1/chat/completions and /v1/models."""
    from kit.errors import KitError, require

    require("fastapi", "serve", "perskit serve")
    require("uvicorn", "serve", "perskit serve")
    from kit.commands.chat import open_persona
    from kit.server.app import ServedPersona, create_app
    from kit.server.runner import run
    from kit.server.settings import ServerSettings

    personas = []
    for path in bundles:
        b, engine = open_persona(path, quant=quant, system=system, template=template, lora=None, n_ctx=n_ctx,
                                 threads=threads, gpu_layers=gpu_layers)
        if any(p.id == b.persona_id for p in personas):
            raise KitError(f"two bundles are both persona '{b.persona_id}'", where=path, fix="serve each persona once")
        personas.append(ServedPersona.from_bundle(b, engine))
    settings = ServerSettings(host=host, port=port, api_key=api_key or os.environ.get("PERSKIT_API_KEY") or None,
                              max_tokens=max_tokens)
    names = ", ".join(f"{p.id} (stages: {', '.join(s.id for s in p.stages)})" for p in personas)
    click.echo(f"perskit serve: {names} on http://{host}:{port}/v1" + (" (API key required)" if settings.api_key else ""),
               err=True)
    try:
        run(create_app(personas, settings), host, port)
    finally:
        for p in personas:
            p.engine.close()
