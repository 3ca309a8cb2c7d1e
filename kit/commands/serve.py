"""``perskit serve <bundle>...``: an OpenAI-compatible API for companion apps.

    perskit serve export/ada-lin/ --port 8000 --api-key secret
    curl http://127.0.0.1:8000/v1/chat/completions -H 'Authorization: Bearer secret' \\
      -d '{"model": "ada-lin:apprentice", "messages": [{"role": "user", "content": "Hi"}]}'
"""

from __future__ import annotations

import os

import click

from kit.commands.chat import GPU_LAYERS, RETRIEVE


@click.command("serve")
@click.argument("bundles", nargs=-1, required=True, type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Bind address (loopback keeps it local; any other needs --api-key or --insecure).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--api-key", default=None, help="Require this bearer key (default: $PERSKIT_API_KEY, else none).")
@click.option("--insecure", is_flag=True, help="Allow a non-loopback --host without an API key.")
@click.option("--cors-origin", "cors_origins", multiple=True,
              help="Allow browser apps from this origin (e.g. http://localhost:5173); repeatable. Off by default.")
@click.option("--quant", default=None, help="Which GGUF of each bundle (default: Q4_K_M, else the best present).")
@click.option("--system", default=None, help="System prompt for a bare GGUF.")
@click.option("--template", type=click.Path(dir_okay=False), default=None, help="Jinja chat template file.")
@click.option("--n-ctx", type=int, default=None, help="Context window (default: the bundle's, else 2048).")
@click.option("--threads", type=int, default=None, help="CPU threads for llama.cpp.")
@GPU_LAYERS
@click.option("--max-tokens", type=click.IntRange(min=1), default=None,
              help="Reply length when a request gives none (default: the bundle's, else 256).")
@click.option("--max-queue", type=click.IntRange(min=0), default=32, show_default=True,
              help="Requests that may wait per persona; more get 429 with Retry-After.")
@click.option("--queue-timeout", type=click.FloatRange(min=0, min_open=True), default=300.0, show_default=True,
              help="Seconds a request may wait for the model before a 503 with Retry-After.")
@RETRIEVE
def command(bundles, host, port, api_key, insecure, cors_origins, quant, system, template, n_ctx, threads,
            gpu_layers, max_tokens, max_queue, queue_timeout, retrieve):
    """Serve persona bundles (or a bare GGUF) on /v1/chat/completions and /v1/models."""
    from kit.errors import KitError, require

    require("fastapi", "serve", "perskit serve")
    require("uvicorn", "serve", "perskit serve")
    from kit.server.settings import ServerSettings, check_exposure

    settings = ServerSettings(host=host, port=port, api_key=api_key or os.environ.get("PERSKIT_API_KEY") or None,
                              max_tokens=max_tokens, cors_origins=list(cors_origins), max_queue=max_queue,
                              queue_timeout_s=queue_timeout)
    check_exposure(settings, insecure=insecure)  # before loading any model
    from kit.commands.chat import open_persona
    from kit.server.app import ServedPersona, create_app
    from kit.server.runner import run

    personas = []
    try:
        for path in bundles:
            b, engine = open_persona(path, quant=quant, system=system, template=template, lora=None, n_ctx=n_ctx,
                                     threads=threads, gpu_layers=gpu_layers)
            personas.append(ServedPersona.from_bundle(b, engine, retrieve))
            if [p.id for p in personas].count(b.persona_id) > 1:
                raise KitError(f"two bundles are both persona '{b.persona_id}'", where=path,
                               fix="serve each persona once")
        ids = "; ".join(", ".join(mid for mid, _ in p.model_ids()) for p in personas)
        click.echo(f"perskit serve: models {ids} on http://{host}:{port}/v1"
                   + (" (API key required)" if settings.api_key else ""), err=True)
        run(create_app(personas, settings), host, port)
    finally:
        for p in personas:
            p.engine.close()
