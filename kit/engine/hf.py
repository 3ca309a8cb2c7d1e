"""``HFEngine``: transformers (+ optional PEFT adapter) behind the ChatEngine interface.

Batched scoring (``choice_logprobs_batch``) is what makes IPIP-NEO-120 fast on a CPU: the
prompts of one administration share a long token prefix (persona system prompt + instruction
+ options), so that prefix runs through the model once, its KV cache is copied to the batch,
and only each prompt's short tail (the statement) is run — one forward per batch, tails
right-padded and read at each row's last real position. Generation batches pad on the left.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Iterator

from kit.engine.base import GenParams, Message
from kit.errors import KitError

MIN_SHARED_PREFIX = 16  # below this a cached prefix saves less than the cache copy costs
REUSE_SLACK = 64  # rerun a stored prefix this much shorter than the batch's own shared one


class HFEngine:
    def __init__(self, model_path: str | Path, adapter: str | Path | None = None, *,
                 device: str = "cpu", threads: int | None = None, name: str | None = None,
                 merge: bool = True):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model_path = Path(model_path)
        if not (model_path / "config.json").is_file():
            raise KitError("not a transformers model folder (no config.json)", where=str(model_path),
                           fix="point to a folder with config.json + safetensors weights")
        if threads:
            torch.set_num_threads(threads)
        tok_src = adapter if adapter and (Path(adapter) / "tokenizer_config.json").is_file() else model_path
        self.tok = AutoTokenizer.from_pretrained(str(tok_src))
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        if not getattr(self.tok, "chat_template", None):
            raise KitError("tokenizer has no chat template", where=str(tok_src),
                           fix="set train.chat_template in the recipe or use an instruct model")
        model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=torch.float32)
        if adapter is not None:
            from peft import PeftModel

            if not (Path(adapter) / "adapter_config.json").is_file():
                raise KitError("not a PEFT adapter folder (no adapter_config.json)", where=str(adapter),
                               fix="rerun `perskit train` or point to <run>/sft/adapter")
            model = PeftModel.from_pretrained(model, str(adapter))
            if merge:  # merged LoRA runs at base-model speed; the files on disk are untouched
                model = model.merge_and_unload()
        self.model = model.to(device).eval()
        self.device = device
        self.name = name or (f"hf:{model_path.name}" + (f"+{Path(adapter).name}" if adapter else ""))
        self._prefix: tuple[list[int], object] | None = None  # (token ids, KV cache at batch 1)
        self.prefix_cache = True  # bench/ipip_speed.py turns it off to time the plain path
        # Our decode loop leaves padding holes in the cache; sliding-window layers (Gemma 3)
        # count window by cache slots, so those models generate with transformers' own loop.
        layer_types = getattr(self.model.config, "layer_types", None) or []
        self._plain_attention = "sliding_attention" not in layer_types

    # -- prompts ---------------------------------------------------------------------------
    def prompt_text(self, messages: list[Message]) -> str:
        return self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _encode(self, text: str) -> list[int]:
        # The chat template already wrote BOS where the model wants it.
        return self.tok(text, add_special_tokens=False)["input_ids"]

    # -- scoring ---------------------------------------------------------------------------
    def choice_logprobs(self, messages: list[Message], choices: list[str], prefix: str = "") -> list[float]:
        return self.choice_logprobs_batch([messages], choices, prefix)[0]

    def choice_logprobs_batch(self, batch: list[list[Message]], choices: list[str],
                              prefix: str = "") -> list[list[float]]:
        """Log-probability of each choice as the reply's first token(s), for every prompt."""
        import torch

        texts = [self.prompt_text(m) + prefix for m in batch]
        seqs = [self._encode(t) for t in texts]
        choice_ids = self._single_token_choices(texts[0], choices)
        with torch.inference_mode():
            if choice_ids is not None:
                logits = self._last_logits(seqs)
                lp = torch.log_softmax(logits.float(), dim=-1)[:, choice_ids]
                return lp.tolist()
            # A choice spans several tokens here: score each full continuation.
            out = []
            for text, seq in zip(texts, seqs):
                conts = [self._encode(text + c)[len(seq):] for c in choices]
                out.append(self._continuation_logprobs(seq, conts))
            return out

    def _single_token_choices(self, text: str, choices: list[str]) -> list[int] | None:
        base = self._encode(text)
        ids = []
        for c in choices:
            full = self._encode(text + c)
            if full[:len(base)] != base or len(full) - len(base) != 1:
                return None
            ids.append(full[-1])
        return ids if len(set(ids)) == len(ids) else None

    def _shared_prefix(self, seqs: list[list[int]]):
        """Reuse (or build) the KV cache of the prefix all ``seqs`` share."""
        import torch

        limit = min(len(s) for s in seqs) - 1  # every row keeps at least one token to run
        n = 0
        first = seqs[0]
        while n < limit and all(s[n] == first[n] for s in seqs):
            n += 1
        if self._prefix is not None:
            ids, cache = self._prefix
            # The stored prefix serves when it is a prefix of every row and not much shorter than
            # what this batch shares: a short one left by a batch that mixed two system prompts
            # would make every later batch rerun its whole system prompt.
            if len(ids) <= n and first[:len(ids)] == ids and (len(seqs) == 1 or n - len(ids) < REUSE_SLACK):
                return ids, cache
            # Otherwise recompute: cropping a cache is not portable across cache types
            # (sliding-window layers) or transformers versions, and one prefix forward is cheap.
        if n < MIN_SHARED_PREFIX or len(seqs) < 2:
            return None
        ids = first[:n]
        with torch.inference_mode():  # a cache with autograd history could not be deep-copied
            out = self.model(input_ids=torch.tensor([ids], device=self.device), use_cache=True)
        self._prefix = (ids, out.past_key_values)
        return self._prefix

    def _tail_forward(self, seqs: list[list[int]], shared):
        """One padded forward over each sequence's tail after the ``shared`` prefix (its KV cache
        copied to the batch); returns (logits [batch, width, vocab], prefix length, tails)."""
        import torch

        p = len(shared[0]) if shared else 0
        tails = [s[p:] for s in seqs]
        width = max(len(t) for t in tails)
        pad = self.tok.pad_token_id
        ids = torch.tensor([t + [pad] * (width - len(t)) for t in tails], device=self.device)
        mask = torch.tensor([[1] * (p + len(t)) + [0] * (width - len(t)) for t in tails], device=self.device)
        pos = torch.arange(p, p + width, device=self.device).unsqueeze(0).expand(len(seqs), -1)
        kwargs = {}
        if shared:
            cache = copy.deepcopy(shared[1])  # the forward appends to it; keep the stored one clean
            cache.batch_repeat_interleave(len(seqs))
            kwargs = {"past_key_values": cache, "use_cache": True}
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, **kwargs)
        return out.logits, p, tails

    def _last_logits(self, seqs: list[list[int]]):
        """Logits after each sequence's last token, one forward for the batch."""
        import torch

        shared = (self._shared_prefix(seqs) if self.prefix_cache and (len(seqs) > 1 or self._prefix)
                  else None)
        logits, _, tails = self._tail_forward(seqs, shared)
        last = torch.tensor([len(t) - 1 for t in tails], device=self.device)
        return logits[torch.arange(len(seqs), device=self.device), last]

    def answer_nll_batch(self, items: list[tuple[list[Message], str]]) -> list[tuple[float, int]]:
        """(summed negative log-likelihood, token count) of each answer as the assistant's reply
        to its messages: one forward for the batch, the prompts' shared prefix (a system prompt)
        run once. Likelihood metrics need no judge and no generation."""
        import torch

        seqs, starts = [], []
        for messages, answer in items:
            prompt = self.prompt_text(messages)
            pre = self._encode(prompt)
            full = self._encode(prompt + answer)
            if full[:len(pre)] != pre:  # a token merged across the boundary: keep the prompt's own tokens
                full = pre + self._encode(answer)
            seqs.append(full)
            starts.append(len(pre))
        with torch.inference_mode():
            # the shared prefix must end before every answer starts: each answer token is predicted
            shared = (self._shared_prefix([s[:st] for s, st in zip(seqs, starts)])
                      if self.prefix_cache and (len(seqs) > 1 or self._prefix) else None)
            logits, p, tails = self._tail_forward(seqs, shared)
            logp = torch.log_softmax(logits.float(), dim=-1)
            out = []
            for i, (seq, st) in enumerate(zip(seqs, starts)):
                idx = torch.arange(st - 1 - p, len(seq) - 1 - p, device=self.device)
                tgt = torch.tensor(seq[st:], device=self.device)
                out.append((-float(logp[i, idx, tgt].sum()), len(seq) - st))
        return out

    def _continuation_logprobs(self, seq: list[int], conts: list[list[int]]) -> list[float]:
        import torch

        rows = [seq + c for c in conts]
        width = max(len(r) for r in rows)
        pad = self.tok.pad_token_id
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=self.device)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=self.device)
        lp = torch.log_softmax(self.model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
        out = []
        for i, c in enumerate(conts):
            out.append(sum(float(lp[i, len(seq) + j - 1, t]) for j, t in enumerate(c)) if c else float("-inf"))
        return out

    # -- generation ------------------------------------------------------------------------
    def _gen_kwargs(self, params: GenParams) -> dict:
        import torch

        if params.seed >= 0:
            torch.manual_seed(params.seed)
        kw = {"max_new_tokens": params.max_tokens, "pad_token_id": self.tok.pad_token_id}
        if params.temperature > 0:
            kw.update(do_sample=True, temperature=params.temperature, top_p=params.top_p,
                      top_k=params.top_k or None, min_p=params.min_p or None)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if params.repeat_penalty != 1.0:
            kw["repetition_penalty"] = params.repeat_penalty
        return kw

    @staticmethod
    def _cut_stop(text: str, stop: list[str]) -> str:
        for s in stop:
            if s and s in text:
                text = text[: text.index(s)]
        return text

    def complete_batch(self, batch: list[list[Message]], params: GenParams) -> list[str]:
        """Generate replies for several conversations at once.

        Prompts that share a long prefix (eval: one persona system prompt) decode from its
        cached KV with our own loop; otherwise one left-padded ``generate`` call.
        """
        import torch

        seqs = [self._encode(self.prompt_text(m)) for m in batch]
        shared = (self._shared_prefix(seqs) if self.prefix_cache and self._plain_attention and len(seqs) > 1
                  else None)
        if shared:
            with torch.inference_mode():
                rows = self._decode_shared(seqs, shared, params)
            texts = self.tok.batch_decode(rows, skip_special_tokens=True)
            return [self._cut_stop(t, params.stop).strip() for t in texts]
        width = max(len(s) for s in seqs)
        pad = self.tok.pad_token_id
        ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs], device=self.device)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=self.device)
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=mask, **self._gen_kwargs(params))
        texts = self.tok.batch_decode(out[:, width:], skip_special_tokens=True)
        return [self._cut_stop(t, params.stop).strip() for t in texts]

    def _eos_ids(self) -> set[int]:
        ids = {self.tok.eos_token_id}
        gen = getattr(self.model, "generation_config", None)
        extra = getattr(gen, "eos_token_id", None) if gen is not None else None
        ids |= set(extra if isinstance(extra, (list, tuple)) else [extra])
        return {i for i in ids if i is not None}

    def _decode_shared(self, seqs: list[list[int]], shared, params: GenParams) -> list[list[int]]:
        """Greedy or top-p sampling from a shared prefix cache.

        Tails are right-padded; the padding stays in the cache as masked holes and every row
        carries its own position ids, so each row decodes exactly as it would alone.
        """
        import torch

        gen = torch.Generator(device=self.device)
        gen.manual_seed(params.seed if params.seed >= 0 else int(torch.randint(0, 2**31, (1,))))
        p = len(shared[0])
        tails = [s[p:] for s in seqs]
        n, width = len(seqs), max(len(t) for t in tails)
        pad = self.tok.pad_token_id
        ids = torch.tensor([t + [pad] * (width - len(t)) for t in tails], device=self.device)
        mask = torch.tensor([[1] * (p + len(t)) + [0] * (width - len(t)) for t in tails], device=self.device)
        pos = torch.arange(p, p + width, device=self.device).unsqueeze(0).expand(n, -1)
        cache = copy.deepcopy(shared[1])
        cache.batch_repeat_interleave(n)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True)
        cur = torch.tensor([p + len(t) for t in tails], device=self.device)
        logits = out.logits[torch.arange(n, device=self.device), cur - p - 1]
        eos = self._eos_ids()
        rows: list[list[int]] = [[] for _ in range(n)]
        done = [False] * n
        for _ in range(params.max_tokens):
            nxt = self._pick(logits.float(), params, gen)
            for i, t in enumerate(nxt.tolist()):
                if not done[i]:
                    if t in eos:
                        done[i] = True
                    else:
                        rows[i].append(t)
            if all(done):
                break
            mask = torch.cat([mask, torch.ones(n, 1, dtype=mask.dtype, device=self.device)], dim=1)
            out = self.model(input_ids=nxt[:, None], attention_mask=mask, position_ids=cur[:, None],
                             past_key_values=out.past_key_values, use_cache=True)
            cur = cur + 1
            logits = out.logits[:, -1]
        return rows

    @staticmethod
    def _pick(logits, params: GenParams, gen):
        import torch

        if params.temperature <= 0:
            return logits.argmax(-1)
        probs = torch.softmax(logits / params.temperature, dim=-1)
        if params.top_p < 1:
            sp, si = probs.sort(dim=-1, descending=True)
            keep = sp.cumsum(-1) - sp < params.top_p  # always keeps the top token
            sp = sp * keep
            probs = torch.zeros_like(probs).scatter(-1, si, sp)
        return torch.multinomial(probs / probs.sum(-1, keepdim=True), 1, generator=gen).squeeze(-1)

    def complete(self, messages: list[Message], params: GenParams) -> str:
        return self.complete_batch([messages], params)[0]

    def stream(self, messages: list[Message], params: GenParams) -> Iterator[str]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        stop_flag = threading.Event()

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kw):
                return stop_flag.is_set()

        ids = torch.tensor([self._encode(self.prompt_text(messages))], device=self.device)
        streamer = TextIteratorStreamer(self.tok, skip_prompt=True, skip_special_tokens=True)
        kw = self._gen_kwargs(params)
        th = threading.Thread(target=self._generate_quiet, daemon=True, kwargs=dict(
            input_ids=ids, attention_mask=torch.ones_like(ids), streamer=streamer,
            stopping_criteria=StoppingCriteriaList([_Stop()]), **kw))
        th.start()
        sent = ""
        try:
            for piece in streamer:
                cut = self._cut_stop(sent + piece, params.stop)
                if len(cut) < len(sent + piece):
                    if cut[len(sent):]:
                        yield cut[len(sent):]
                    return
                sent += piece
                if piece:
                    yield piece
        finally:
            stop_flag.set()  # closing the iterator stops generation at the next token
            th.join(timeout=30)

    def _generate_quiet(self, **kw):
        import torch

        with torch.inference_mode():
            self.model.generate(**kw)

    def close(self) -> None:
        self._prefix = None
        self.model = None
