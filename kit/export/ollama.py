"""Ollama Modelfile with a Go TEMPLATE equivalent to the persona's jinja chat template.

Ollama does not run jinja, so the template is translated. A translation is only
trusted when it is *proven* equal: each known family (ChatML as in SmolLM2/Qwen,
Llama 3, Gemma) renders a sample conversation in Python with the same structure as
its Go template, and that text must equal the jinja rendering of the same
conversation. An unrecognised template raises a KitError; the exporter then ships a
Modelfile without TEMPLATE (Ollama falls back to the GGUF's own metadata) and says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from kit.errors import KitError

SAMPLE = [
    {"role": "system", "content": "You are Ada."},
    {"role": "user", "content": "Hello there."},
    {"role": "assistant", "content": "Good day to you."},
    {"role": "user", "content": "What do you build?"},
]


@dataclass(frozen=True)
class Family:
    name: str
    marker: str  # substring that identifies the family in a jinja template
    open: str  # turn header, '{role}' is the role name after role_map
    close: str  # end of a turn
    stop: tuple[str, ...]
    role_map: dict = field(default_factory=dict)
    system: str = "turn"  # 'turn': own turn; 'first_user': prefixed to the first user turn

    def role(self, role: str) -> str:
        return self.role_map.get(role, role)

    def render(self, messages: list[dict]) -> str:
        """Python twin of go_template(): the text Ollama will build."""
        system = next((m["content"] for m in messages if m["role"] == "system"), "")
        text = ""
        if system and self.system == "turn":
            text += self.open.format(role=self.role("system")) + system + self.close
        pending = system if self.system == "first_user" else ""
        for m in messages:
            if m["role"] == "system":
                continue
            content = m["content"]
            if pending and m["role"] == "user":
                content = pending + "\n\n" + content
            pending = ""
            text += self.open.format(role=self.role(m["role"])) + content + self.close
        return text + self.open.format(role=self.role("assistant"))

    def go_template(self) -> str:
        role = "{{ .Role }}"
        for src, dst in self.role_map.items():
            role = f'{{{{ if eq .Role "{src}" }}}}{dst}{{{{ else }}}}{role}{{{{ end }}}}'
        head = self.open.format(role=role)
        tpl = ""
        if self.system == "turn":
            tpl += "{{- if .System }}" + self.open.format(role=self.role("system")) + "{{ .System }}" \
                   + self.close + "{{ end }}"
            body = "{{ .Content }}"
        else:
            tpl += "{{- $sys := .System }}"
            body = '{{ if and $sys (eq .Role "user") }}{{ $sys }}\n\n{{ end }}{{ $sys = "" }}{{ .Content }}'
        tpl += '{{- range .Messages }}{{- if ne .Role "system" }}' + head + body + self.close + "{{ end }}{{- end }}"
        return tpl + self.open.format(role=self.role("assistant"))


FAMILIES = (
    Family("chatml", "<|im_start|>", "<|im_start|>{role}\n", "<|im_end|>\n", ("<|im_end|>",)),
    Family("llama3", "<|start_header_id|>", "<|start_header_id|>{role}<|end_header_id|>\n\n", "<|eot_id|>",
           ("<|eot_id|>",)),
    # Gemma has no system role. Google's Gemma 3 template prefixes the system text to the
    # first user turn; simpler templates (perskit's preset) give it a user turn of its own.
    Family("gemma3", "<start_of_turn>", "<start_of_turn>{role}\n", "<end_of_turn>\n", ("<end_of_turn>",),
           {"assistant": "model"}, system="first_user"),
    Family("gemma", "<start_of_turn>", "<start_of_turn>{role}\n", "<end_of_turn>\n", ("<end_of_turn>",),
           {"assistant": "model", "system": "user"}),
)


def render_jinja(template: str, messages: list[dict], *, bos: str = "", eos: str = "") -> str:
    """Render a chat template the way transformers does, in the chat engine's sandbox."""
    from kit.engine.llamacpp import ChatTemplate

    return ChatTemplate(template, bos_token=bos, eos_token=eos).render(messages, add_generation_prompt=True)


def detect_family(template: str, *, bos: str = "", eos: str = "") -> Family:
    """The family whose rendering equals the jinja template's, or a KitError."""
    try:
        ref = render_jinja(template, SAMPLE, bos=bos, eos=eos)
    except Exception as exc:  # a template that cannot render a plain conversation is unusable
        raise KitError(f"the chat template does not render a system/user/assistant conversation ({exc})",
                       where="chat_template.jinja", fix="fix the template and retrain") from None
    if bos and "bos_token" in template and ref.startswith(bos):
        # The template prints BOS itself; under Ollama it comes from the tokenizer
        # (GGUF add_bos_token), so the Go template leaves it out. (SmolLM2's bos_token is
        # <|im_start|>, which its template never prints as BOS: only strip a printed one.)
        ref = ref[len(bos):]
    for fam in FAMILIES:
        if fam.marker in template and fam.render(SAMPLE) == ref:
            return fam
    raise KitError("no Ollama TEMPLATE translation for this chat template (known: ChatML, Llama 3, Gemma)",
                   where="chat_template.jinja",
                   fix="the GGUF still carries the exact jinja template (llama.cpp, LM Studio use it); for Ollama "
                       "write TEMPLATE in the Modelfile by hand")


def modelfile(gguf_name: str, *, system: str, template: str | None, stops: list[str],
              params: dict | None = None, comment: str = "") -> str:
    """Text of an Ollama Modelfile (FROM, TEMPLATE, SYSTEM, PARAMETER)."""
    lines = [f"# {ln}" for ln in comment.splitlines()] if comment else []
    lines.append(f"FROM ./{gguf_name}")
    if template is not None:
        lines.append(f'TEMPLATE """{_triple_quote_safe(template)}"""')
    lines.append(f'SYSTEM """{_triple_quote_safe(system)}"""')
    for s in stops:
        lines.append(f"PARAMETER stop {json.dumps(s)}")
    for k, v in (params or {}).items():
        lines.append(f"PARAMETER {k} {v}")
    return "\n".join(lines) + "\n"


def _triple_quote_safe(text: str) -> str:
    if '"""' in text:
        raise KitError('text contains """, which an Ollama Modelfile cannot quote', where="Modelfile",
                       fix='remove """ from the persona text')
    return text


def parse_modelfile(text: str) -> dict:
    """Read back a Modelfile: instructions with multi-line \"\"\" values (for validation)."""
    out: dict = {"PARAMETER": []}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        cmd, _, rest = line.partition(" ")
        cmd = cmd.upper()
        if rest.startswith('"""'):
            value = rest[3:]
            while not value.endswith('"""') or value == "":
                if i >= len(lines):
                    raise KitError(f"unterminated \"\"\" in {cmd}", where="Modelfile", fix="close the quotes")
                value += "\n" + lines[i]
                i += 1
            rest = value[:-3]
        if cmd not in {"FROM", "TEMPLATE", "SYSTEM", "PARAMETER", "ADAPTER", "LICENSE", "MESSAGE"}:
            raise KitError(f"unknown Modelfile instruction {cmd}", where="Modelfile", fix="see Ollama's Modelfile docs")
        if cmd == "PARAMETER":
            key, _, val = rest.partition(" ")
            out["PARAMETER"].append((key, json.loads(val) if val.startswith('"') else val))
        else:
            out[cmd] = rest
    if "FROM" not in out:
        raise KitError("Modelfile has no FROM", where="Modelfile", fix="add FROM ./model.gguf")
    return out
