"""Tiny, randomly initialised models built locally in seconds (no hub).

They exist so tests and ``recipes/smoke.yaml`` exercise the real code paths
(transformers, PEFT, TRL, llama.cpp conversion) without downloading anything.
``tiny-llama-spm`` and ``tiny-gemma3`` use a SentencePiece tokenizer trained on the
fly, because llama.cpp's converter rejects a made-up BPE tokenizer (its
pre-tokenizer check only knows published ones); ``tiny-qwen2`` uses a byte-level
BPE trained with ``tokenizers``, like the real Qwen2.
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

TINY_MODELS = ("tiny-llama-spm", "tiny-qwen2", "tiny-gemma3")
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
        split_digits=True, add_dummy_prefix=True, normalization_rule_name="identity",
    )
    path = out / "tokenizer.model"
    path.write_bytes(model.getvalue())
    return path


def build_tiny(name: str, out: Path, seed: int = 0) -> Path:
    """Write a tiny random model + tokenizer (with chat template) into ``out``."""
    import torch
    import transformers

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    common = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=False)
    if name == "tiny-llama-spm":
        _train_spm(out, ["<|im_start|>", "<|im_end|>"])
        tok = transformers.LlamaTokenizer.from_pretrained(str(out), legacy=False)
        tok.chat_template = CHATML
        tok.eos_token = "<|im_end|>"
        tok.pad_token = "<pad>"
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
        cfg = transformers.Gemma3TextConfig(vocab_size=len(tok), head_dim=16, sliding_window=64,
                                            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                            pad_token_id=tok.pad_token_id, **common)
        model = transformers.Gemma3ForCausalLM(cfg)
    elif name == "tiny-qwen2":
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
        cfg = transformers.Qwen2Config(vocab_size=len(tok), eos_token_id=tok.eos_token_id,
                                       pad_token_id=tok.pad_token_id, **common)
        model = transformers.Qwen2ForCausalLM(cfg)
    else:
        raise ValueError(f"unknown tiny model {name!r}; choose from {TINY_MODELS}")
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    return out
