"""The export stage: adapter -> merged HF -> GGUF (f16 + quants) + LoRA GGUF -> verified bundle.

The bundle is built in a hidden staging folder beside its destination and moved
into place only after every file is written *and* verified, so a crash, a full
disk or a failed parity check never leaves a half bundle (an older complete
bundle stays untouched). Intermediate files (merged checkpoint, base GGUF) live in
a scratch folder under ``<run>/export/`` that is removed at the end.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from kit.errors import KitError
from kit.export import card as cards
from kit.export import companion, ggufops, merge, modelcard, ollama, parity
from kit.rundir import hash_obj, hash_paths, peak_rss_mb, read_jsonl, settings, sha256_file


def _write(path: Path, data: bytes) -> None:
    """Every bundle file written by Python goes through here (one place to fail on a full disk)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def export_run(loaded, persona, run, *, force: bool = False, progress=None) -> dict:
    """Run the export stage for a trained run; returns the bundle manifest."""
    from kit.export.converter import converter_dir, llama_cpp_version
    from kit.models.base import base_for_run

    cfg = loaded.spec.export
    quants = ggufops.check_quants(cfg.quants)
    avatar = persona.root / "avatar.png"
    if cfg.card and avatar.is_file():
        try:  # a bad avatar fails now, not after the merge and conversion
            cards.read_chunks(avatar.read_bytes())
        except KitError as exc:
            raise KitError(f"the character card avatar is unusable: {exc.message}", where=str(avatar),
                           fix="replace avatar.png with a valid PNG image, or remove it") from None
    adapter_stage, adapter = merge.find_adapter(run.path)
    converter_dir()  # fail in one line now rather than after the merge
    base_rec = base_for_run(loaded, run, "export")  # the folder the adapter was trained on, unchanged
    base = base_rec.folder
    dest = loaded.resolve_path(cfg.out_dir) / persona.spec.id
    inputs = hash_obj({"adapter": hash_paths([adapter]), "export": settings(cfg),
                       "passages": hash_paths([run.passages]) if run.passages.is_file() else None,
                       "model": loaded.spec.train.model, "base": base_rec.fingerprint,
                       "persona": settings(persona.spec),
                       "llama_cpp": llama_cpp_version()})
    stage = run.stage("export")
    if not force and stage.is_done(inputs) and (dest / "manifest.json").is_file():
        return json.loads((dest / "manifest.json").read_text(encoding="utf-8"))
    stage.begin(inputs, adapter=str(adapter), bundle=str(dest))
    # a killed export leaves its staging and scratch folders behind (a merged model, an f16
    # GGUF): they belong to this stage, so a rerun clears them before starting over
    for stale in [*dest.parent.glob(f".{dest.name}.partial-*"), *dest.parent.glob(f".{dest.name}.old-*"),
                  *(run.path / "export").glob(".work-*")]:
        shutil.rmtree(stale, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    (run.path / "export").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".work-", dir=run.path / "export"))
    try:
        manifest = build_bundle(Build(loaded, persona, run, base=base, adapter=adapter, adapter_stage=adapter_stage,
                                      quants=quants, staging=staging, work=work, progress=progress))
        place(staging, dest)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise KitError("disk full while writing the export bundle; nothing was left half-written",
                           where=str(dest.parent), fix="free disk space (about 3x the model size) and rerun") from None
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    stage.finish(bundle=str(dest), files={k: v["bytes"] for k, v in manifest["files"].items()},
                 parity=manifest["verify"]["parity"], peak_rss_mb=peak_rss_mb())
    return manifest


def place(staging: Path, dest: Path) -> None:
    """Move the finished bundle into place; an existing bundle is replaced only now."""
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{int(time.time() * 1000)}")
        os.replace(dest, old)
    os.chmod(staging, 0o755)  # mkdtemp made it private; a bundle is meant to be shared
    os.replace(staging, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@dataclass
class Build:
    """One bundle build: its inputs, where it writes, and what earlier steps produced."""

    loaded: Any
    persona: Any
    run: Any
    base: Path
    adapter: Path
    adapter_stage: str
    quants: list[str]
    staging: Path
    work: Path
    progress: Callable[[str], None] | None = None
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    merged: Path | None = None
    tok: Any = None
    template: str = ""
    _clock: tuple[str | None, float] = (None, 0.0)

    @property
    def cfg(self):
        return self.loaded.spec.export

    @property
    def style(self) -> dict:
        return self.loaded.spec.construct.prompt_style()  # the prompt the model was trained with

    def step(self, msg: str) -> None:
        """Start a named step: time the previous one and report progress."""
        now = time.perf_counter()
        if self._clock[0]:
            self.timings[self._clock[0]] = round(now - self._clock[1], 2)
        self._clock = (msg, now)
        if self.progress:
            self.progress(msg)


def build_bundle(b: Build) -> dict:
    b.step("merging the adapter into the base weights")
    b.merged = b.work / "merged"
    merge_info = merge.merge_adapter(b.base, b.adapter, b.merged)
    b.template = (b.merged / "chat_template.jinja").read_text(encoding="utf-8")
    from transformers import AutoTokenizer

    b.tok = AutoTokenizer.from_pretrained(str(b.merged))
    family, stops, base_info = companion_files(b)
    files, f16, lora = write_ggufs(b, base_info)
    verify = verify_bundle(b, f16=f16, quants=files, lora=lora)
    b.warnings += verify.pop("warnings")
    b.step("writing the model card and the manifest")
    chat = b.loaded.spec.chat
    companion.write_readme(_write, b.staging, persona=b.persona, info=base_info,
                           recipe=b.loaded.spec.model_dump(mode="json"), sampling={**chat.sampling(), "n_ctx": chat.n_ctx},
                           parity=verify["parity"], eval_report=b.run.eval_report, primary=_primary(b))
    manifest = bundle_manifest(b, merge_info=merge_info, family=family, stops=stops, verify=verify)
    _write(b.staging / "manifest.json", (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode())
    return manifest


def _primary(b: Build) -> str:
    return f"{b.persona.spec.id}-{b.quants[0]}.gguf"


def companion_files(b: Build):
    """Modelfiles and character cards per life stage, and the base model's licence files.
    Returns (chat template family or None, stop strings, base model info)."""
    b.step("writing the Modelfile and character card")
    tok, cfg = b.tok, b.cfg
    try:
        family = ollama.detect_family(b.template, bos=tok.bos_token or "", eos=tok.eos_token or "")
        go_template, stops = family.go_template(), list(family.stop)
    except KitError as exc:
        family, go_template, stops = None, None, []
        b.warnings.append(f"Modelfile has no TEMPLATE: {exc.message}")
    if tok.eos_token and tok.eos_token not in stops:
        stops.append(tok.eos_token)
    passages = read_jsonl(b.run.passages)  # construct's passages: the lorebooks and the index
    for fname, data in companion.stage_files(b.persona, style=b.style, primary=_primary(b), go_template=go_template,
                                             stops=stops, params=b.loaded.spec.chat.modelfile_params(),
                                             family=family.name if family else None, card=cfg.card,
                                             passages=passages).items():
        _write(b.staging / fname, data)
    if cfg.index and passages:
        from kit.retrieval import Retriever

        Retriever(passages, b.loaded.spec.construct.retriever).save(b.staging / "index")
    base_info = modelcard.base_model_info(b.loaded.spec.train.model, b.base)
    for fname, data in companion.licence_files(base_info).items():
        _write(b.staging / fname, data)
    return family, stops, base_info


def write_ggufs(b: Build, base_info) -> tuple[dict, Path, Path | None]:
    """The f16 GGUF, each quant and the LoRA GGUF: ({quant: path}, f16 path, lora path or None)."""
    name, title = b.persona.spec.id, f"{b.persona.spec.name} (perskit)"
    b.step("converting to GGUF f16")
    f16 = (b.staging if "f16" in b.quants else b.work) / f"{name}-f16.gguf"
    ggufops.convert_hf(merge.converter_view(b.merged, b.work / "gguf-src"), f16, model_name=title,
                       metadata=modelcard.gguf_metadata(base_info, title))
    files = {q: (f16 if q == "f16" else b.staging / f"{name}-{q}.gguf") for q in b.quants}
    for q in b.quants:
        if q != "f16":
            b.step(f"quantizing to {q}")
            ggufops.quantize(f16, files[q], q)
    lora = None
    if b.cfg.lora_gguf:
        b.step("converting the LoRA adapter to GGUF")
        lora = b.staging / f"{name}-lora-f16.gguf"
        ggufops.convert_lora(b.adapter, merge.converter_view(b.base, b.work / "base-src"), lora)
    return files, f16, lora


def bundle_manifest(b: Build, *, merge_info: dict, family, stops: list[str], verify: dict) -> dict:
    spec, loaded, chat = b.persona.spec, b.loaded, b.loaded.spec.chat
    return {
        "persona": {"id": spec.id, "name": spec.name},
        "stages": [{"id": s.id, "label": s.label, "period": s.period,
                    "system_prompt": spec.system_prompt(s.id, **b.style)} for s in spec.stages],
        "default_stage": spec.stages[-1].id,
        "base_model": loaded.spec.train.model,
        "adapter": {"stage": b.adapter_stage, "hash": hash_paths([b.adapter]), **merge_info},
        "recipe": {"name": loaded.spec.name, "hash": hash_obj(loaded.spec.model_dump(mode="json"))},
        "chat_template": {"family": family.name if family else None, "stops": stops},
        "sampling": {**chat.sampling(), "n_ctx": chat.n_ctx, "retrieve": chat.retrieve},
        "eval": eval_summary(b.run.eval_results),
        "verify": verify,
        "warnings": b.warnings,
        "tools": _tool_versions(),
        "timings_s": b.timings,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": {p.relative_to(b.staging).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
                  for p in sorted(b.staging.rglob("*")) if p.is_file()},
    }


def verify_bundle(b: Build, *, f16: Path, quants: dict, lora: Path | None) -> dict:
    """Load every GGUF, check metadata + tokenizer, and compare logits with the HF model."""
    warnings: list[str] = []
    tok, step, min_top1 = b.tok, b.step, b.cfg.min_top1_f16
    step("verifying: HF reference logits")
    convs = parity.parity_conversations(b.persona, b.cfg.parity_prompts, b.style)
    ids = parity.hf_token_ids(tok, convs)
    ref = parity.hf_logits(b.merged, ids)
    n_ctx = max(256, max(len(x) for x in ids) + 64)
    out: dict = {"parity": {}, "prompts": len(convs)}

    step("verifying: f16 metadata, tokenizer, parity")
    llm = ggufops.load_llama(f16, n_ctx=n_ctx, logits_all=True)
    meta = ggufops.metadata(llm)
    if meta.get("tokenizer.chat_template") != b.template:
        raise KitError("the f16 GGUF's tokenizer.chat_template differs from the adapter's chat template",
                       where=str(f16), fix="report this; the converter did not pick up chat_template.jinja")
    if tok.eos_token_id is not None and int(llm.token_eos()) != int(tok.eos_token_id):
        raise KitError(f"GGUF EOS id {llm.token_eos()} != tokenizer EOS id {tok.eos_token_id}", where=str(f16),
                       fix="check eos_token in the adapter's tokenizer_config.json")
    out["metadata"] = {"chat_template": "ok", "eos_token_id": int(llm.token_eos()),
                       "add_bos_token": meta.get("tokenizer.ggml.add_bos_token"),
                       **{k: meta.get(k) for k in ("general.name", "general.license", "general.base_model.0.name")}}
    out["tokenizer"], tok_warnings = parity.check_tokenizer(llm, tok, convs, ids, where=f16)  # fails on a mismatch
    warnings += tok_warnings
    out["parity"]["f16"] = parity.compare(ref, parity.gguf_logits(llm, ids))
    del llm
    f16p = out["parity"]["f16"]
    if f16p["top1_clear"] < min_top1:
        raise KitError(f"f16 GGUF disagrees with the HF model: top-1 agreement {f16p['top1_clear']:.3f} "
                       f"(on {f16p['clear_positions']} of {f16p['positions']} positions whose top two logits are "
                       f">= {parity.CLEAR_GAP} apart) < export.min_top1_f16 {min_top1}", where=str(f16),
                       fix="the conversion is broken for this model; do not ship it (report the architecture)")
    for q, path in quants.items():
        if q != "f16":
            step(f"verifying: {q} parity")
            out["parity"][q] = parity.compare(ref, parity.gguf_logits(ggufops.load_llama(path, n_ctx=n_ctx,
                                                                                         logits_all=True), ids))
    out.update(verify_chat(b, quants, convs, ids, n_ctx, out["tokenizer"]))
    if lora is not None:
        step("verifying: LoRA GGUF on the base GGUF")
        out["lora"] = verify_lora(lora, base=b.work / "base-src", work=b.work, ids=ids[:2], ref=ref[:2], n_ctx=n_ctx)
    return {**out, "warnings": warnings}


def verify_chat(b: Build, quants: dict, convs, ids, n_ctx: int, tokenizer: dict) -> dict:
    """The primary GGUF through llama.cpp's own chat path: same tokens, and sample replies."""
    primary = next(iter(quants))
    b.step(f"verifying: chat with {primary}")
    tokenizer["chat_path"] = parity.check_chat_path(quants[primary], b.tok, convs, ids, n_ctx)
    chat_llm = ggufops.load_llama(quants[primary], n_ctx=n_ctx + 128)
    out = {"chat": {"file": quants[primary].name,
                    "samples": parity.chat_samples(chat_llm, convs[:b.cfg.verify_questions])}}
    del chat_llm
    return out


def verify_lora(lora: Path, *, base: Path, work: Path, ids, ref, n_ctx: int) -> dict:
    """The LoRA GGUF must load on the base GGUF, change its output, and match the merged HF model."""
    import numpy as np

    base_gguf = work / "base-f16.gguf"
    ggufops.convert_hf(base, base_gguf)
    plain = list(parity.gguf_logits(ggufops.load_llama(base_gguf, n_ctx=n_ctx, logits_all=True), ids))
    with_lora = list(parity.gguf_logits(ggufops.load_llama(base_gguf, lora=lora, n_ctx=n_ctx, logits_all=True),
                                        ids))
    change = max(float(np.abs(a - b).max()) for a, b in zip(plain, with_lora))
    if change < 1e-4:
        raise KitError("the LoRA GGUF loads but does not change the base model's output", where=str(lora),
                       fix="check that the adapter has trained (non-zero) weights")
    vs_merged = parity.compare(ref, with_lora)
    return {"max_logit_change": round(change, 4), "vs_merged": vs_merged,
            "base_gguf_sha256": sha256_file(base_gguf)}


def eval_summary(path: Path) -> dict | None:
    """The eval stage's headline figures (its 'summary' block), when eval ran."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {"error": "eval/results.json is unreadable"}
    if isinstance(data, dict) and isinstance(data.get("summary"), dict):
        return data["summary"]
    text = json.dumps(data)
    return data if len(text) < 20000 else {"note": "see eval/results.json", "keys": sorted(data)[:50]}


def _tool_versions() -> dict:
    from importlib import metadata

    out = {}
    for pkg in ("llama_cpp_python", "transformers", "peft", "torch"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out

