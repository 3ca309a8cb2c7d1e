"""Construction throughput against a local OpenAI-compatible server: concurrency 1 vs 4, cached rerun.

    .venv/bin/python bench/construct_throughput.py                      # N llama_cpp.server slots + proxy
    .venv/bin/python bench/construct_throughput.py --server llama-server  # llama.cpp's server, -np 4, cont. batching
    .venv/bin/python bench/construct_throughput.py --base-url http://127.0.0.1:8080/v1   # a server you run

Three ways to get "a server with several slots":
- ``slots`` (default): llama-cpp-python's server (``python -m llama_cpp.server``; needs the
  ``[server]`` extras sse-starlette, starlette-context, pydantic-settings) serialises requests
  behind one lock, so N such processes, one slot each, sit behind a small proxy on 127.0.0.1
  that hands each request to a free slot.
- ``llama-server``: llama.cpp's own server built from the same vendored llama.cpp
  (``bash bench/build_llama_server.sh``), ``--parallel N`` with continuous batching: the
  slots' tokens share one batched forward pass, as on a GPU server.
- ``--base-url``: any OpenAI-compatible server already running (e.g. llama-server or vLLM on
  a GPU box); nothing is started.
Each concurrency level starts from an empty cache; the cached rerun rebuilds the
concurrency-4 run with ``force`` (every call a cache hit). With ``llama-server`` the
llama-batched-bench figures (decode tokens/s at 1, 2, 4 parallel sequences) are recorded
too: they show how much batching the hardware itself gives, whatever the client does.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_slot(gguf: Path, port: int, n_ctx: int, threads: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(threads), "--verbose", "False"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, OMP_NUM_THREADS=str(threads)))


def start_llama_server(binary: Path, gguf: Path, port: int, slots: int, n_ctx: int) -> subprocess.Popen:
    """llama.cpp's server: one process, ``slots`` slots sharing the context, continuous batching."""
    cmd = [str(binary), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port), "-c", str(n_ctx * slots),
           "-np", str(slots), "-cb", "-t", str(os.cpu_count() or 1), "--no-webui"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def batched_bench(binary: Path, gguf: Path) -> dict | None:
    """Decode/prompt tokens/s at 1, 2 and 4 parallel sequences, straight from llama.cpp."""
    exe = binary.with_name("llama-batched-bench")
    if not exe.is_file():
        return None
    cmd = [str(exe), "-m", str(gguf), "-c", "8192", "-t", str(os.cpu_count() or 1), "-npp", "300", "-ntg", "128",
           "-npl", "1,2,4"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600).stdout
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 10 and cells[0].isdigit():
            rows[f"parallel_{cells[2]}"] = {"prompt_tok_s": float(cells[5]), "decode_tok_s": float(cells[7]),
                                            "total_tok_s": float(cells[9])}
    if "parallel_1" in rows and "parallel_4" in rows:
        rows["decode_speedup_4_over_1"] = round(rows["parallel_4"]["decode_tok_s"] / rows["parallel_1"]["decode_tok_s"], 2)
        rows["total_speedup_4_over_1"] = round(rows["parallel_4"]["total_tok_s"] / rows["parallel_1"]["total_tok_s"], 2)
    return {"command": " ".join(["llama-batched-bench"] + cmd[1:2] + ["<gguf>"] + cmd[3:]), **rows}


def wait_up(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    import httpx

    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"server on port {port} exited (rc {proc.returncode}); for llama_cpp.server install "
                             "the server extras: pip install sse-starlette starlette-context pydantic-settings")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the server on port {port} did not come up in {timeout:.0f} s")


def start_proxy(upstreams: list[int]) -> tuple[ThreadingHTTPServer, int]:
    """Each request waits for a free slot, like llama-server's slot scheduler."""
    import httpx

    free: queue.Queue[int] = queue.Queue()
    for p in upstreams:
        free.put(p)
    client = httpx.Client(timeout=600)

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            port = free.get()
            try:
                r = client.post(f"http://127.0.0.1:{port}{self.path}", content=body,
                                headers={"Content-Type": "application/json"})
            finally:
                free.put(port)
            self.send_response(r.status_code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(r.content)))
            self.end_headers()
            self.wfile.write(r.content)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, srv.server_address[1]


def one_run(recipe: Path, run_dir: Path, concurrency: int, force: bool = False) -> dict:
    from rich.console import Console

    from kit.commands._common import open_run
    from kit.construct.pipeline import run_construct

    loaded, lp, run = open_run(str(recipe), str(run_dir), (f"teacher.concurrency={concurrency}",))
    t0 = time.perf_counter()
    m = run_construct(loaded, lp, run, force=force, console=Console(file=io.StringIO()))
    wall = time.perf_counter() - t0
    recs = m["counts"]["records"]
    return {"concurrency": concurrency, "wall_s": round(wall, 2), "records": recs,
            "records_per_min": round(recs / wall * 60, 2), "teacher_stats": m["teacher_stats"],
            "rows": {"train": m["counts"]["train"], "test": m["counts"]["test"]}}


def main() -> None:
    import signal

    # a timeout's SIGTERM must still run the finally block that stops the slot servers
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--server", choices=["slots", "llama-server"], default="slots",
                    help="what to start on 127.0.0.1 (ignored with --base-url)")
    ap.add_argument("--llama-server", type=Path, default=None,
                    help="llama-server binary (default: what bench/build_llama_server.sh built)")
    ap.add_argument("--base-url", default=None, help="use this running OpenAI-compatible server instead")
    ap.add_argument("--model", default="smollm2", help="model name sent to --base-url")
    ap.add_argument("--passages", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--persona", default=str(REPO / "personas" / "ada-lin"))
    ap.add_argument("--out", default=None, help="default: bench/results/construct_throughput[-<server>].json")
    args = ap.parse_args()
    from kit.teachers.llamacpp import resolve_gguf

    server = "url" if args.base_url else args.server
    out = Path(args.out or REPO / "bench" / "results" /
               ("construct_throughput.json" if server == "slots" else f"construct_throughput-{server}.json"))
    gguf = resolve_gguf("smollm2-135m-instruct")
    procs: list[subprocess.Popen] = []
    proxy = None
    extra: dict = {}
    try:
        if server == "slots":
            ports = [free_port() for _ in range(args.slots)]
            procs = [start_slot(gguf, p, 2048, 1) for p in ports]
            for p, proc in zip(ports, procs):
                wait_up(p, proc)
            proxy, pport = start_proxy(ports)
            base_url = f"http://127.0.0.1:{pport}/v1"
            what = (f"perskit construct against llama-cpp-python servers (SmolLM2-135M-Instruct Q4_1) behind a "
                    f"{args.slots}-slot proxy on 127.0.0.1")
        elif server == "llama-server":
            binary = args.llama_server or _built_llama_server()
            port = free_port()
            procs = [start_llama_server(binary, gguf, port, args.slots, 2048)]
            wait_up(port, procs[0])
            base_url = f"http://127.0.0.1:{port}/v1"
            what = (f"perskit construct against llama.cpp's llama-server (SmolLM2-135M-Instruct Q4_1), "
                    f"{args.slots} slots, continuous batching, on 127.0.0.1")
            extra["batched_bench"] = batched_bench(binary, gguf)
        else:
            base_url = args.base_url
            what = f"perskit construct against {args.base_url} (model {args.model})"
        tmp = Path(tempfile.mkdtemp(prefix="perskit-bench-"))
        recipe = tmp / "bench.yaml"
        recipe.write_text(json.dumps({
            "name": "bench", "persona": args.persona,
            "teacher": {"kind": "openai", "base_url": base_url, "model": args.model,
                        "timeout_s": 300, "json_mode": "schema",
                        # greedy decoding: both concurrency levels do the same token work
                        "sampling": {"temperature": 0.0, "max_tokens": args.max_tokens}},
            "construct": {"max_passages": args.passages, "retriever": "bm25", "knowledge_words": 120,
                          "style_words": 60, "few_shot": 1, "passage_words": 110,
                          "patterns": {"ordinary": 1, "opinion": 1, "anti_induction": 1}},
            "train": {"backend": "trl", "model": "tiny-llama-spm"}}), encoding="utf-8")
        c1 = one_run(recipe, tmp / "c1", 1)
        print("concurrency 1:", c1, flush=True)
        c4 = one_run(recipe, tmp / "c4", 4)
        print("concurrency 4:", c4, flush=True)
        cached = one_run(recipe, tmp / "c4", 4, force=True)
        print("cached rerun:", cached, flush=True)
        result = {
            "what": what, "server": server,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "load_avg_at_end": os.getloadavg()},
            "settings": {"slots": args.slots, "threads_per_slot": 1 if server == "slots" else os.cpu_count(),
                         "passages": args.passages, "max_tokens": args.max_tokens, "temperature": 0.0},
            "concurrency_1": c1, "concurrency_4": c4, "cached_rerun": cached,
            "speedup_c4_over_c1": round(c4["records_per_min"] / c1["records_per_min"], 2),
            "cached_speedup_over_first_run": round(c4["wall_s"] / cached["wall_s"], 1),
            "goals": {"c4_over_c1": 2.5, "cached": 50}, **extra,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(json.dumps({k: result[k] for k in ("speedup_c4_over_c1", "cached_speedup_over_first_run")}))
    finally:
        if proxy:
            proxy.shutdown()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _built_llama_server() -> Path:
    proc = subprocess.run(["bash", str(REPO / "bench" / "build_llama_server.sh")], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"could not build llama-server: {proc.stderr.strip()[-300:]}")
    return Path(proc.stdout.strip().splitlines()[-1]) / "llama-server"


if __name__ == "__main__":
    main()
