"""What a bundle says about where its weights come from: the base model and its licence, an
HF-style ``README.md`` model card, the licence notice shipped alongside, and the GGUF
``general.*`` metadata (name, base model, licence) that LM Studio and the Hub display.

The base model's facts come from its own model card when the checkpoint folder has one
(``README.md`` YAML front matter: ``license``, ``license_name``, ``license_link``,
``base_model``), else from the table of the families perskit ships recipes for. perskit
cannot download licence texts (no internet at run time), so a licence the base folder does
not carry as a file is passed on as a reference with the notice its terms require.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

# Facts from each model's Hugging Face card. Matched on the lower-cased model name.
KNOWN_BASES = (
    ("smollm2-135m", dict(repo="HuggingFaceTB/SmolLM2-135M-Instruct", org="HuggingFaceTB", license="apache-2.0")),
    ("smollm2-360m", dict(repo="HuggingFaceTB/SmolLM2-360M-Instruct", org="HuggingFaceTB", license="apache-2.0")),
    ("gemma3-270m", dict(repo="google/gemma-3-270m", org="google", license="gemma",
                         license_link="https://ai.google.dev/gemma/terms")),
    ("gemma", dict(org="google", license="gemma", license_link="https://ai.google.dev/gemma/terms")),
    ("llama-3.2", dict(org="meta-llama", license="llama3.2",
                       license_link="https://www.llama.com/llama3_2/license/")),
    ("qwen2.5-3b", dict(org="Qwen", license="other", license_name="qwen-research",
                        license_link="https://huggingface.co/Qwen/Qwen2.5-3B-Instruct/blob/main/LICENSE")),
    ("qwen2.5", dict(org="Qwen", license="apache-2.0")),
    ("minicpm", dict(org="openbmb", license="other", license_name="minicpm-model-license",
                     license_link="https://github.com/OpenBMB/MiniCPM/blob/main/MiniCPM%20Model%20License.md")),
)
# Notices the licences ask redistributors to pass on with the model.
NOTICES = {
    "gemma": "Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms. "
             "The use restrictions of the Gemma Prohibited Use Policy apply to this model too.",
    "llama3.2": "Llama 3.2 is licensed under the Llama 3.2 Community License, Copyright (c) Meta Platforms, Inc. "
                "All Rights Reserved. Built with Llama.",
}
LICENCE_FILES = ("LICENSE", "LICENSE.txt", "LICENSE.md", "NOTICE", "USE_POLICY.md")


@dataclass
class BaseModelInfo:
    name: str  # as the recipe names it
    repo: str | None = None  # owner/name on the Hub
    org: str | None = None
    license: str = "unknown"
    license_name: str | None = None
    license_link: str | None = None
    licence_files: dict[str, str] = field(default_factory=dict)  # file name -> text, from the base folder

    @property
    def repo_url(self) -> str | None:
        return f"https://huggingface.co/{self.repo}" if self.repo else None


def front_matter(text: str) -> dict:
    """The YAML front matter of a model card (``---`` ... ``---``), or {}."""
    import yaml

    m = re.match(r"\A---\s*\n(.*?)\n---\s*(\n|\Z)", text, re.S)
    if not m:
        return {}
    try:
        data = yaml.safe_load(m.group(1))
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def base_model_info(name: str, folder: Path | None = None) -> BaseModelInfo:
    """The base model's identity and licence: its folder's own card first, then KNOWN_BASES."""
    info = BaseModelInfo(name=name, repo=name if re.fullmatch(r"[\w.-]+/[\w.-]+", name) else None)
    low = name.lower()
    for hint, facts in KNOWN_BASES:
        if hint in low:
            info.repo = info.repo or facts.get("repo")
            info.org, info.license = facts.get("org"), facts["license"]
            info.license_name, info.license_link = facts.get("license_name"), facts.get("license_link")
            break
    if info.repo and not info.org:
        info.org = info.repo.split("/")[0]
    folder = Path(folder) if folder else None
    if folder and folder.is_dir():
        card = folder / "README.md"
        meta = front_matter(card.read_text(encoding="utf-8", errors="replace")) if card.is_file() else {}
        if isinstance(meta.get("license"), str):
            info.license = meta["license"]
            info.license_name = meta.get("license_name") or info.license_name
            info.license_link = meta.get("license_link") or info.license_link
        for fname in LICENCE_FILES:
            if (folder / fname).is_file():
                info.licence_files[fname] = (folder / fname).read_text(encoding="utf-8", errors="replace")
    return info


def gguf_metadata(info: BaseModelInfo, model_name: str) -> dict:
    """``general.*`` keys for llama.cpp's converter (``--metadata`` override file)."""
    base = {"name": info.repo.split("/")[-1] if info.repo else info.name}
    if info.org:
        base["organization"] = info.org
    if info.repo_url:
        base["repo_url"] = info.repo_url
    meta = {"general.name": model_name, "general.license": info.license, "general.base_models": [base],
            "general.tags": ["persona", "perskit"]}
    if info.license_name:
        meta["general.license.name"] = info.license_name
    if info.license_link:
        meta["general.license.link"] = info.license_link
    return meta


def licence_notice(info: BaseModelInfo) -> str:
    """``LICENSE-base-model.md``: what the weights are licensed under and where the terms are."""
    lines = [f"# Base model licence: {info.repo or info.name}", "",
             f"This bundle's weights are a fine-tune of **{info.repo or info.name}**, licensed under "
             f"**{info.license_name or info.license}**.", ""]
    if info.license_link:
        lines += [f"Terms: {info.license_link}", ""]
    elif info.license not in ("unknown", "other"):
        lines += [f"Terms: https://spdx.org/licenses/{info.license}.html (SPDX id `{info.license}`)", ""]
    if info.license in NOTICES:
        lines += [NOTICES[info.license], ""]
    if info.licence_files:
        lines += ["The base model's own licence files are shipped beside this one: "
                  + ", ".join(f"`base-model-{f}`" for f in info.licence_files) + ".", ""]
    if info.license == "unknown":
        lines += ["perskit could not determine the licence: check the base model's own terms before sharing.", ""]
    lines += ["The persona data and the fine-tune add no further restriction; the base model's terms govern use "
              "and redistribution of these weights.", ""]
    return "\n".join(lines)


def _yaml_front(info: BaseModelInfo, language: str) -> list[str]:
    import yaml

    meta = {"base_model": info.repo or info.name, "base_model_relation": "finetune", "license": info.license}
    if info.license_name:
        meta["license_name"] = info.license_name
    if info.license_link:
        meta["license_link"] = info.license_link
    meta.update(language=[language], pipeline_tag="text-generation", library_name="gguf",
                tags=["gguf", "persona", "perskit", "roleplay"])
    return ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).strip(), "---", ""]


def _eval_section(report: Path | None) -> list[str]:
    """The eval report's Summary table, quoted whole (what got worse too), or a plain 'not run'."""
    text = report.read_text(encoding="utf-8") if report and report.is_file() else ""
    m = re.search(r"^## Summary\s*\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    if not m:
        return ["This run was not evaluated (`perskit eval` did not run before export).", ""]
    table = "\n".join(ln for ln in m.group(1).strip().splitlines() if ln.startswith("|"))
    return ["Trained variants against the prompted base model (the base model given the full persona "
            "description), from the run's `eval/report.md`:", "", table, ""]


def _training_lines(recipe: dict) -> list[str]:
    train, dpo, construct = recipe.get("train") or {}, recipe.get("dpo") or {}, recipe.get("construct") or {}
    teacher = recipe.get("teacher") or {}
    lora = train.get("lora") or {}
    lines = [f"- **Data**: `perskit construct` had a teacher model (`{teacher.get('kind', '?')}`: "
             f"{teacher.get('model') or teacher.get('base_url') or '-'}) write in-character conversations, with "
             "chain-of-thought and anti-induction questions, from the persona's sources, split by life stage "
             "(PersLLM method).",
             f"- **SFT**: LoRA r={lora.get('r', '?')}, alpha={lora.get('alpha', '?')}, {train.get('max_steps', '?')} "
             f"steps at learning rate {train.get('learning_rate', '?')} ({train.get('backend', '?')} backend)."]
    if dpo.get("enabled"):
        lines.append(f"- **DPO**: automatically mined preference pairs (other personas and stages, the base "
                     f"model's generic answers, answers that gave in to induction), beta={dpo.get('beta')}, "
                     f"{dpo.get('max_steps')} steps.")
    style = construct.get("system_prompt", "full")
    lines.append(f"- **System prompt**: trained with the `{style}` stage prompt; use the stage's prompt "
                 "(`manifest.json` stages, the Modelfiles and cards carry it).")
    return lines + [f"- Recipe `{recipe.get('name', '?')}`; the adapter is merged into the base weights, then "
                    "converted and quantized with llama.cpp.", ""]


def model_card(*, persona, info: BaseModelInfo, recipe: dict, stages: list[dict], files: list[str],
               sampling: dict, parity: dict, eval_report: Path | None, primary: str) -> str:
    """The bundle's ``README.md``: an HF-style model card with YAML front matter."""
    spec = persona.spec
    lines = _yaml_front(info, spec.language)
    lines += [f"# {spec.name} — a perskit persona model", "",
              f"{info.repo or info.name} fine-tuned to speak as **{spec.name}** in {len(stages)} life "
              f"stage{'s' if len(stages) != 1 else ''}. {spec.identity.strip().split(chr(10))[0]}", "",
              "## Life stages", "", "| model id (`perskit serve`) | stage | period | Ollama | character card |",
              "|---|---|---|---|---|"]
    lines += [f"| `{spec.id}:{s['id']}` | {s['label']} | {s.get('period', '')} | `Modelfile.{s['id']}` | "
              f"`{spec.id}.{s['id']}.card.png` |" for s in stages]
    lines += ["", "`Modelfile` and the unsuffixed card are the last stage.", "", "## Files", ""]
    lines += [f"- `{f}`" for f in files] + [""]
    lines += ["## How it was made", ""] + _training_lines(recipe)
    lines += ["## Evaluation", ""] + _eval_section(eval_report)
    if parity:
        lines += ["Agreement of each GGUF with the merged HF model (next-token top-1 over the export's parity "
                  "prompts):", "", "| file | top-1 |", "|---|---|"]
        lines += [f"| {q} | {v.get('top1', float('nan')):.2f} |" for q, v in parity.items() if isinstance(v, dict)]
        lines.append("")
    lines += ["## Sampling defaults", "", "From the recipe's `chat:` section; `perskit chat`, `perskit serve` and "
              "the Modelfiles use them.", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sampling.items()] + [""]
    lines += ["## How to run", "", "```bash", "perskit chat .            # terminal chat, switch stages with Ctrl+T",
              "perskit serve .           # OpenAI-compatible API on 127.0.0.1:8000, model ids above",
              f"llama-cli -m {primary} --jinja -sys \"$(jq -r '.stages[-1].system_prompt' manifest.json)\"",
              f"ollama create {spec.id} -f Modelfile",
              f"python -m llama_cpp.server --model {primary}   # the GGUF's own chat template", "```", "",
              "The GGUF carries the exact chat template it was trained with (`tokenizer.chat_template`): in LM "
              "Studio keep the template from the model's metadata (\"Jinja\"), in llama.cpp / KoboldCpp pass "
              "`--jinja`, and send the stage's system prompt.", ""]
    lines += ["## Intended use and limits", "",
              f"- For conversation and role-play with a portrayal of {spec.name}, offline. It is a small model "
              "imitating a persona, not the person: it invents facts, and its knowledge of the persona's life is "
              "what the sources and the teacher gave it.",
              "- Not for advice (medical, legal, financial), decisions about people, or impersonating a real "
              "person to others without their consent.",
              "- Stage awareness is learned, not guaranteed: a stage may still mention things it should not "
              "know yet. The eval table above says how well this run held.", ""]
    lines += ["## Licence", "", f"The weights inherit the base model's licence: **{info.license_name or info.license}**"
              + (f" ({info.license_link})" if info.license_link else "") + ". See `LICENSE-base-model.md`.", ""]
    return "\n".join(lines)
