"""Tiny, randomly initialised models built locally in seconds (no hub).

They exist so tests and ``recipes/smoke.yaml`` exercise the real code paths
(transformers, PEFT, TRL, llama.cpp conversion) without downloading anything.
``tiny-llama-spm`` and ``tiny-gemma3`` use a SentencePiece tokenizer trained on the
fly, because llama.cpp's converter rejects a made-up BPE tokenizer (its
pre-tokenizer check only knows published ones); ``tiny-qwen2`` uses a byte-level
BPE trained with ``tokenizers``, like the real Qwen2 (so it cannot be exported to GGUF).
``tiny-minicpm`` is a MiniCPM checkpoint
(``model_type: minicpm``, µP scales, tied embeddings, SentencePiece like the real one) that
only the kit's MiniCPM -> Llama fold (kit/models/minicpm.py) makes loadable.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
GEMMA = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else 'user' %}"
    "{% if message['role'] == 'system' %}{{ '<start_of_turn>user\n' + message['content'] + '<end_of_turn>\n' }}"
    "{% else %}{{ '<start_of_turn>' + role + '\n' + message['content'] + '<end_of_turn>\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

TINY_MODELS = ("tiny-llama-spm", "tiny-qwen2", "tiny-gemma3", "tiny-minicpm")
# Part of the cache folder name: bump it when a build changes (2: SentencePiece without a
# prefix space; 3: tiny-gemma3 with six layers and query_pre_attn_scalar), so a model cached by an older kit is rebuilt.
TINY_BUILD = 3
VOCAB = 512


def _corpus() -> str:
    return resources.files("kit.models").joinpath("tiny_corpus.txt").read_text(encoding="utf-8")


def _train_spm(out: Path, specials: list[str]) -> Path:
    import io

    import sentencepiece as spm

    model = io.BytesIO()
    lines = _corpus().splitlines() * 4
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=VOCAB, model_type="bpe",
        byte_fallback=True,  # any UTF-8 text tokenizes, even with a 512-piece vocab
        user_defined_symbols=specials, character_coverage=1.0, hard_vocab_limit=False,
        unk_id=0, bos_id=1, eos_id=2, pad_id=3, num_threads=1, minloglevel=2,
        # No dummy prefix: see _spm_tokenizer.
        split_digits=True, add_dummy_prefix=False, normalization_rule_name="identity",
    )
    path = out / "tokenizer.model"
    path.write_bytes(model.getvalue())
    return path


def _spm_tokenizer(out: Path):
    """A ChatML SentencePiece Llama tokenizer that never prepends '▁' (HF prepend_scheme
    'never', no dummy prefix in tokenizer.model), so the GGUF tokenizes every text the same.

    Why not transformers' default (non-legacy, prepend_scheme 'first': '▁' only at the start
    of a text): llama.cpp's SPM tokenizer either prepends ' ' to the start *and* after every
    special token (add_space_prefix) or never. 'first' can only be matched on texts that begin
    with a special token, so plain text did not: HF ``▁What`` vs GGUF ``W`` ``hat``. Gemma's
    tokenizer works this way, and a choice like "1" stays one token in both engines.
    """
    import transformers

    _train_spm(out, ["<|im_start|>", "<|im_end|>"])
    tok = transformers.LlamaTokenizer.from_pretrained(str(out), legacy=False, add_prefix_space=False)
    tok.chat_template = CHATML
    tok.eos_token = "<|im_end|>"
    tok.pad_token = "<pad>"
    return tok


def _bpe_tokenizer():
    """A byte-level BPE with ChatML markers, like the real Qwen2's."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(_corpus().splitlines() * 4, trainer=trainer)
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>",
                                               pad_token="<|endoftext|>", unk_token=None)
    tok.chat_template = CHATML
    return tok


def build_tiny(name: str, out: Path, seed: int = 0) -> Path:
    """Write a tiny random model + tokenizer (with chat template) into ``out``."""
    import torch
    import transformers

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    common = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=False)
    if name == "tiny-llama-spm":
        tok = _spm_tokenizer(out)
        cfg = transformers.LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                                       eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                                       **common)
        model = transformers.LlamaForCausalLM(cfg)
    elif name == "tiny-gemma3":
        _train_spm(out, ["<start_of_turn>", "<end_of_turn>"])
        tok = transformers.GemmaTokenizer.from_pretrained(str(out))
        tok.chat_template = GEMMA
        tok.eos_token = "<end_of_turn>"
        tok.pad_token = "<pad>"
        # Six layers: Gemma 3's 5 local : 1 global pattern, which llama.cpp (pattern 6 for gemma3)
        # and mlx-lm (indexes the 6th layer's cache) both assume. query_pre_attn_scalar = head_dim
        # as in Gemma 3 1B: llama.cpp scales by 1/sqrt(head_dim) (f16 top-1 0.25 with HF's default 256).
        cfg = transformers.Gemma3TextConfig(vocab_size=len(tok), head_dim=16, query_pre_attn_scalar=16, sliding_window=64,
                                            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                            pad_token_id=tok.pad_token_id, **{**common, "num_hidden_layers": 6})
        model = transformers.Gemma3ForCausalLM(cfg)
    elif name == "tiny-qwen2":
        tok = _bpe_tokenizer()
        cfg = transformers.Qwen2Config(vocab_size=len(tok), eos_token_id=tok.eos_token_id,
                                       pad_token_id=tok.pad_token_id, **common)
        model = transformers.Qwen2ForCausalLM(cfg)
    elif name == "tiny-minicpm":
        return _build_minicpm(out, common)
    else:
        raise ValueError(f"unknown tiny model {name!r}; choose from {TINY_MODELS}")
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    return out


MINICPM_MUP = {"scale_emb": 12, "scale_depth": 1.4, "dim_model_base": 16}  # MiniCPM-2B: 12, 1.4, 256 (hidden 2304)


def _build_minicpm(out: Path, common: dict) -> Path:
    """MiniCPM layout: Llama tensor names, tied embeddings, µP keys in config.json. transformers
    5 has no ``minicpm`` type, so the weights come from a tied Llama and the config is
    rewritten; random weights mean the µP factors only change the scale, as in the real model.

    Weights are drawn with std 0.3 and the embedding divided by scale_emb (µP's h_0 = scale_emb * E
    is then of the usual size): with small layers, a random *tied* model mostly scores its own
    last input token highest and greedy decoding repeats it (a newline, forever), so DPO mining
    found no usable negatives. Here the layers, not the embedding's self-similarity, decide."""
    import json

    import torch
    import transformers

    tok = _spm_tokenizer(out)
    cfg = transformers.LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                   pad_token_id=tok.pad_token_id, **{**common, "tie_word_embeddings": True,
                                                                     "num_key_value_heads": 4, "initializer_range": 0.3})
    model = transformers.LlamaForCausalLM(cfg)
    with torch.no_grad():
        model.get_input_embeddings().weight /= MINICPM_MUP["scale_emb"]
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    data = json.loads((out / "config.json").read_text(encoding="utf-8"))
    data.update(model_type="minicpm", architectures=["MiniCPMForCausalLM"], **MINICPM_MUP)
    (out / "config.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    (out / "generation_config.json").unlink(missing_ok=True)
    return out
