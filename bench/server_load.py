"""Server load: N concurrent clients against ``perskit serve`` and against llama-cpp-python's own
server (``python -m llama_cpp.server``) on the same GGUF, in one run, loopback only.

    OMP_NUM_THREADS=1 .venv/bin/python bench/server_load.py                      # embedded SmolLM2, 16 clients
    .venv/bin/python bench/server_load.py --bundle export/ada-lin --clients 16 --requests 3 --rounds 2

Each client sends ``--requests`` chat completions one after another; every third client
streams. Both servers get identical requests (the stage's system prompt sent by the client,
temperature 0, the same max_tokens and penalties), run with the same n_ctx and threads, one at a
time (never both at once: they would share the CPU), alternating for ``--rounds`` rounds.
llama_cpp.server runs with ``--interrupt_requests False``: by default it cuts a running stream
short as soon as another request waits, which would make its streams shorter, not faster.

Reported per server: requests/s, completion tokens/s, p50/p95 latency (whole reply; streams
also time to first token), errors (non-200, transport errors, streams without [DONE]), and the
perskit/llama-cpp-python ratios. Every loop is bounded: requests have timeouts and the run a
deadline. Results: ``bench/results/server_load.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

QUESTIONS = ["Tell me about the first bridge you worked on.", "What does a good drawing need?",
             "Describe your working day from morning to evening.", "What did the storm do to the harbour?"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bundle_for(args, tmp: Path) -> tuple[Path, Path, str, str]:
    """(bundle dir, its GGUF, persona id, the default stage's system prompt)."""
    from kit.engine.bundle import load_bundle

    if args.bundle:
        b = load_bundle(args.bundle)
        return Path(args.bundle), b.gguf, b.persona_id, b.stage(None).system_prompt
    from kit.models.resolve import embedded_gguf

    gguf = embedded_gguf("smollm2-135m-instruct")
    folder = tmp / "ada-lin"
    folder.mkdir()
    (folder / "ada-lin-Q4_1.gguf").symlink_to(gguf)
    prompt = "You are Ada Lin, a bridge engineer. Stay in character as Ada Lin."
    manifest = {"persona": {"id": "ada-lin", "name": "Ada Lin"}, "default_stage": "present",
                "stages": [{"id": "present", "label": "Present", "system_prompt": prompt}],
                "chat_template": {"family": "chatml", "stops": ["<|im_end|>"]},
                "files": {"ada-lin-Q4_1.gguf": {}}}
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder, gguf, "ada-lin", prompt


def start(kind: str, args, bundle: Path, gguf: Path, port: int) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    if kind == "perskit":
        cmd = [sys.executable, "-m", "kit", "serve", str(bundle), "--port", str(port), "--n-ctx", str(args.n_ctx),
               "--threads", str(args.threads), "--max-queue", str(args.clients * 2)]
    else:
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
               "--port", str(port), "--n_ctx", str(args.n_ctx), "--n_threads", str(args.threads),
               "--n_threads_batch", str(args.threads), "--interrupt_requests", "False", "--verbose", "False"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_up(proc: subprocess.Popen, url: str, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"{url}/v1/models", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"server at {url} did not come up in {timeout} s")


async def one_request(client, url: str, body: dict, stream: bool) -> dict:
    t0 = time.perf_counter()
    out = {"stream": stream, "ok": False, "ttft_s": None, "tokens": 0}
    try:
        if not stream:
            r = await client.post(f"{url}/v1/chat/completions", json=body)
            out["status"] = r.status_code
            if r.status_code == 200:
                out["tokens"] = r.json()["usage"]["completion_tokens"]
                out["ok"] = True
        else:
            async with client.stream("POST", f"{url}/v1/chat/completions", json={**body, "stream": True}) as r:
                out["status"] = r.status_code
                done = False
                async for line in r.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    if line == "data: [DONE]":
                        done = True
                        break
                    delta = (json.loads(line[6:]).get("choices") or [{}])[0].get("delta") or {}
                    if delta.get("content"):
                        out["ttft_s"] = out["ttft_s"] or time.perf_counter() - t0
                        out["tokens"] += 1  # one chunk per token on both servers
                out["ok"] = r.status_code == 200 and done
    except Exception as exc:  # a transport error is an error in the table, not a crash of the bench
        out["error"] = f"{type(exc).__name__}: {exc}"[:200]
    out["latency_s"] = time.perf_counter() - t0
    return out


async def load(url: str, model: str, system: str, args) -> tuple[list[dict], float]:
    import httpx

    async def client_loop(i: int, client) -> list[dict]:
        res = []
        for j in range(args.requests):
            body = {"model": model, "temperature": 0, "max_tokens": args.max_tokens, "repeat_penalty": 1.0,
                    "seed": 0, "messages": [{"role": "system", "content": system},
                                            {"role": "user", "content": QUESTIONS[(i + j) % len(QUESTIONS)]}]}
            res.append(await one_request(client, url, body, stream=i % 3 == 0))
        return res

    limits = httpx.Limits(max_connections=args.clients + 4)
    async with httpx.AsyncClient(timeout=args.timeout, limits=limits) as client:
        t0 = time.perf_counter()
        runs = await asyncio.wait_for(asyncio.gather(*(client_loop(i, client) for i in range(args.clients))),
                                      args.deadline)
        wall = time.perf_counter() - t0
    return [r for rs in runs for r in rs], wall


def summarise(results: list[dict], wall: float) -> dict:
    ok = [r for r in results if r["ok"]]
    lat = sorted(r["latency_s"] for r in ok)
    ttft = sorted(r["ttft_s"] for r in ok if r["ttft_s"] is not None)

    def pct(xs, q):
        return round(xs[min(len(xs) - 1, int(q * len(xs)))], 3) if xs else None

    return {"requests": len(results), "ok": len(ok), "errors": len(results) - len(ok),
            "error_samples": [r.get("error") or r.get("status") for r in results if not r["ok"]][:5],
            "wall_s": round(wall, 2), "requests_per_s": round(len(ok) / wall, 3),
            "completion_tokens_per_s": round(sum(r["tokens"] for r in ok) / wall, 2),
            "mean_completion_tokens": round(statistics.mean(r["tokens"] for r in ok), 1) if ok else None,
            "p50_latency_s": pct(lat, 0.5), "p95_latency_s": pct(lat, 0.95),
            "p50_stream_ttft_s": pct(ttft, 0.5), "p95_stream_ttft_s": pct(ttft, 0.95)}


def run_server(kind: str, args, bundle: Path, gguf: Path, persona: str, system: str) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start(kind, args, bundle, gguf, port)
    try:
        wait_up(proc, url)
        model = persona if kind == "perskit" else str(gguf)
        asyncio.run(load(url, model, system, argparse.Namespace(**{**vars(args), "clients": 1, "requests": 1})))
        results, wall = asyncio.run(load(url, model, system, args))  # after one warm-up request
        out = summarise(results, wall)
        out["server_alive_after"] = proc.poll() is None
        return out
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", help="A bundle folder (default: the embedded SmolLM2-135M Q4_1 as a bundle).")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=3, help="Requests per client, one after another.")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--n-ctx", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="Alternating rounds (perskit, llama-cpp-python).")
    ap.add_argument("--timeout", type=float, default=300.0, help="Per-request timeout (s).")
    ap.add_argument("--deadline", type=float, default=900.0, help="Per-load-run deadline (s).")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "server_load.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bundle, gguf, persona, system = bundle_for(args, Path(tmp))
        rounds = []
        for i in range(args.rounds):
            load_before = os.getloadavg()[0]
            r = {kind: run_server(kind, args, bundle, gguf, persona, system) for kind in ("perskit", "llama_cpp")}
            r["loadavg_1min_before"] = round(load_before, 2)
            rounds.append(r)
            print(f"round {i + 1}: " + json.dumps(r), flush=True)
    report(args, gguf, rounds)


def report(args, gguf: Path, rounds: list[dict]) -> None:
    from importlib import metadata

    def med(kind, key):
        vals = [r[kind][key] for r in rounds if r[kind][key] is not None]
        return round(statistics.median(vals), 3) if vals else None

    keys = ("requests_per_s", "completion_tokens_per_s", "p50_latency_s", "p95_latency_s", "p50_stream_ttft_s")
    summary = {k: {"perskit": med("perskit", k), "llama_cpp": med("llama_cpp", k)} for k in keys}
    for k, v in summary.items():
        v["ratio_perskit_over_llama_cpp"] = round(v["perskit"] / v["llama_cpp"], 3) if v["perskit"] and \
            v["llama_cpp"] else None
    errors = {kind: sum(r[kind]["errors"] for r in rounds) for kind in ("perskit", "llama_cpp")}
    out = {"gguf": gguf.name, "args": {k: v for k, v in vars(args).items() if k != "out"}, "rounds": rounds,
           "median": summary, "errors_total": errors,
           "conditions": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                          "llama_cpp_python": metadata.version("llama_cpp_python"),
                          "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print("\n| metric (median of rounds) | perskit serve | llama_cpp.server | ratio |\n|---|---|---|---|")
    for k, v in summary.items():
        print(f"| {k} | {v['perskit']} | {v['llama_cpp']} | {v['ratio_perskit_over_llama_cpp']} |")
    print(f"| errors (all rounds) | {errors['perskit']} | {errors['llama_cpp']} | |")


if __name__ == "__main__":
    main()
