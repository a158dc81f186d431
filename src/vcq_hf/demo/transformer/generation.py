"""Generation helpers for VCQ priors: the `VCQMask` logits processor and the classifier-free guidance combination.

`VCQMask` makes every generated sequence a valid VCQ code sequence: at image position t only the codes
`[0, K_t)` can be chosen. It is a plain transformers `LogitsProcessor`, so it composes with every decoding mode of
`generate` (greedy, sampling with temperature / top-k / top-p, beam search, `num_return_sequences`) and with
transformers' classifier-free guidance, which runs *before* user processors (so the mask is applied to the guided
scores and never produces `-inf - -inf = NaN`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import LogitsProcessor
from transformers.cache_utils import Cache, CacheLayerMixin
from transformers.generation.logits_process import LOGITS_PROCESSOR_INPUTS_DOCSTRING
from transformers.utils import add_start_docstrings

from .schedules import CodebookSchedule


class VCQMask(LogitsProcessor):
    r"""
    [`LogitsProcessor`] that restricts image position t to the codes `[0, K_t)` of a VCQ codebook-size schedule.
    Every other id, class and null-class tokens included, gets `-inf`.

    The image position of the token being generated is `t = input_ids.shape[-1] - prompt_length`, where
    `prompt_length` counts the tokens before the first image token (1 for `[class token, x_0, ...]`). All rows of
    the batch share it (the same holds for beams and `num_return_sequences`, which keep equal lengths), so the
    processor is stateless and one instance can be reused across calls.

    `VCQMask()` without a schedule stands for "the schedule of the model that generates": `VCQForCausalLM`'s
    `_get_logits_processor` hook (the one transformers calls inside `generate`) always applies the model's own mask,
    built from `config.codebook_sizes`, in its place. With any other model pass the schedule explicitly:
    `VCQMask(codebook_sizes=config.codebook_sizes, prompt_length=1)`.

    Args:
        codebook_sizes (`CodebookSchedule` or `Sequence[int]`, *optional*):
            K_0 .. K_{T-1}: monotone non-decreasing positive integers, one per image position (e.g.
            `config.codebook_schedule`, used as is; a list is validated). `None`: the generating
            `VCQForCausalLM`'s own schedule (only inside its `generate`).
        prompt_length (`int`, *optional*):
            Number of tokens before the first image token, >= 0. Defaults to 1 (the class token).

    Examples:

    ```python
    >>> import torch
    >>> from vcq_hf import VCQConfig, VCQForCausalLM, VCQMask

    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = VCQForCausalLM(VCQConfig.from_preset("tiny")).eval()
    >>> prompt = model.build_input_ids([0, 2])  # [[class 0], [class 2]]
    >>> out = model.generate(prompt, do_sample=True, logits_processor=VCQMask())
    >>> out.shape  # class token + T = 5 image tokens
    torch.Size([2, 6])
    >>> limits = torch.tensor(model.config.codebook_sizes)
    >>> bool((out[:, 1:] < limits).all())
    True

    >>> # The processor on its own, with hand-built scores: position t = 1 keeps ids [0, 4)
    >>> mask = VCQMask(codebook_sizes=[2, 4, 8], prompt_length=1)
    >>> mask(torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 10))
    tensor([[0., 0., 0., 0., -inf, -inf, -inf, -inf, -inf, -inf]])

    ```
    """

    # Rows of a continuous batch have different lengths, hence different image positions.
    supports_continuous_batching = False

    def __init__(self, codebook_sizes: CodebookSchedule | Sequence[int] | None = None, prompt_length: int = 1):
        if codebook_sizes is not None:
            codebook_sizes = CodebookSchedule.cached(codebook_sizes)
        if isinstance(prompt_length, bool) or not isinstance(prompt_length, int) or prompt_length < 0:
            raise ValueError(
                f"`prompt_length` (={prompt_length!r}) has to be an integer >= 0: the number of tokens before the "
                "first image token (1 for a class token)."
            )
        self.codebook_sizes: CodebookSchedule | None = codebook_sizes
        self.prompt_length: int = prompt_length

    def __repr__(self) -> str:
        if self.codebook_sizes is None:
            return "VCQMask(the generating model's schedule)"
        sizes = self.codebook_sizes
        shown = ", ".join(str(size) for size in sizes[:4]) + (", ..." if len(sizes) > 4 else "")
        return f"VCQMask(codebook_sizes=[{shown}] (T={len(sizes)}), prompt_length={self.prompt_length})"

    @add_start_docstrings(LOGITS_PROCESSOR_INPUTS_DOCSTRING)
    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.codebook_sizes is None:
            raise ValueError(
                "VCQMask() was called without a codebook schedule. Only VCQForCausalLM.generate supplies its own "
                "schedule; with any other model pass it explicitly: "
                "VCQMask(codebook_sizes=config.codebook_sizes, prompt_length=<number of tokens before the first "
                "image token, 1 for a class token>)."
            )
        if scores.dim() != 2:
            raise ValueError(f"VCQMask expects scores of shape (batch_size, vocab_size), got {tuple(scores.shape)}.")
        position = input_ids.shape[-1] - self.prompt_length
        num_positions = len(self.codebook_sizes)
        if not 0 <= position < num_positions:
            raise ValueError(
                f"VCQMask: the next token is at image position {position} (sequence length {input_ids.shape[-1]} - "
                f"prompt_length {self.prompt_length}), outside the schedule's positions [0, {num_positions}). Check "
                "prompt_length and generate at most the remaining image tokens (max_new_tokens)."
            )
        limit = self.codebook_sizes[position]
        if limit > scores.shape[-1]:
            raise ValueError(
                f"VCQMask: K_{position} = {limit} exceeds the vocabulary size {scores.shape[-1]} of the scores."
            )
        outside = self.codebook_sizes.outside_mask(scores.shape[-1], scores.device)[position]  # (V,), cached
        return scores.masked_fill(outside, -float("inf"))  # a new tensor; `scores` is left unchanged


def classifier_free_guidance(
    cond_logits: torch.Tensor, uncond_logits: torch.Tensor, guidance_scale: float
) -> torch.Tensor:
    """Classifier-free guidance in logit space: `uncond + guidance_scale * (cond - uncond)` (LlamaGen, DiT).

    It induces the same distribution as transformers' `UnbatchedClassifierFreeGuidanceLogitsProcessor`, which applies
    the same formula to log-softmaxed scores (the two differ by a per-row constant). Apply `VCQMask` *after* this
    combination: masked ids are `-inf` in both inputs, and `-inf - -inf` is NaN.

    Args:
        cond_logits (`torch.Tensor` of shape `(batch_size, vocab_size)`): logits given the class token.
        uncond_logits (`torch.Tensor` of shape `(batch_size, vocab_size)`): logits given the null class token.
        guidance_scale (`float`): 1 returns `cond_logits`; larger values push further from the unconditional model.

    Returns:
        `torch.Tensor` of shape `(batch_size, vocab_size)`: the guided logits (a new tensor).
    """
    if cond_logits.shape != uncond_logits.shape:
        raise ValueError(
            f"cond_logits {tuple(cond_logits.shape)} and uncond_logits {tuple(uncond_logits.shape)} must have the "
            "same shape."
        )
    return uncond_logits + guidance_scale * (cond_logits - uncond_logits)


class PrefixStaticLayer(CacheLayerMixin):
    """One layer of [`VCQStaticCache`]: key/value buffers of `max_cache_len` positions, allocated once at the first
    update (batch, heads, dtype and device from the first states) and filled in place; `update` returns views of the
    filled prefix, so attention reads only the positions written so far and nothing is concatenated or reallocated.
    The buffers are left uninitialised (`torch.empty`): no position is read before it is written, so there is no
    zero-fill pass, and on an OS with lazy paging a page becomes resident only when the positions in it are written.
    """

    is_compileable = False
    is_sliding = False

    def __init__(self, max_cache_len: int, **kwargs):
        super().__init__()
        self.max_cache_len = max_cache_len
        self.length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        batch_size, num_heads = key_states.shape[:2]
        self.device = key_states.device
        self.keys = key_states.new_empty(batch_size, num_heads, self.max_cache_len, key_states.shape[-1])
        self.values = value_states.new_empty(batch_size, num_heads, self.max_cache_len, value_states.shape[-1])
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self.max_cache_len:
            raise ValueError(f"VCQStaticCache holds {self.max_cache_len} positions; position {end - 1} was written.")
        self.keys[:, :, self.length : end].copy_(key_states)  # (B, nh, n, hd) into the preallocated buffer
        self.values[:, :, self.length : end].copy_(value_states)
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]  # views, no copy

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.length + query_length, 0

    def get_seq_length(self) -> int:
        return self.length

    def get_max_length(self) -> int:
        return self.max_cache_len

    def reset(self) -> None:
        self.length = 0


class VCQStaticCache(Cache):
    """A KV cache preallocated for `max_cache_len` positions: one [`PrefixStaticLayer`] per decoder layer. Sampling T
    image tokens feeds T tokens, `[class token, x_0, ..., x_{T-2}]` (the last code is sampled, never fed), so
    `max_cache_len = T` suffices. Unlike transformers' `DynamicCache` it never concatenates (a decode
    step's cost does not grow by re-copying the past, and the memory is allocated once); unlike its `StaticCache` the
    attention of step t reads only the t + 1 filled positions, not all `max_cache_len` under a mask.

    Args:
        num_hidden_layers (`int`): the number of decoder layers.
        max_cache_len (`int`): positions to hold, e.g. `num_image_tokens` for sampling.
    """

    def __init__(self, num_hidden_layers: int, max_cache_len: int):
        super().__init__(layers=[PrefixStaticLayer(max_cache_len) for _ in range(num_hidden_layers)])


__all__ = ["PrefixStaticLayer", "VCQMask", "VCQStaticCache", "classifier_free_guidance"]
