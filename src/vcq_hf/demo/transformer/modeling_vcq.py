"""The VCQ autoregressive prior: a `LlamaForCausalLM` over `[class token, x_0, ..., x_{T-1}]`.

Only the image-specific parts are added to Llama (no Llama code is copied):

- input checks (class token first, image code x_t in `[0, K_t)`, at most 1 + T tokens),
- class dropout to the null class in training mode (for classifier-free guidance),
- the next-token loss on image tokens, optionally with the softmax restricted to `[0, K_t)` (`mask_logits_in_loss`),
- the transformers hook `_get_logits_processor`, through which the stock `generate` always applies a `VCQMask` of
  the model's schedule and uses the null class as the unconditional prompt of classifier-free guidance.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from transformers import (
    AutoModelForCausalLM,
    GenerationConfig,
    LlamaForCausalLM,
    LlamaPreTrainedModel,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedModel,  # noqa: F401  (diffusers reloads a pipeline component only if its module binds this name)
)
from transformers.cache_utils import Cache
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.modeling_utils import slice_logits_to_keep
from transformers.utils import can_return_tuple
from transformers.utils.deprecation import deprecate_kwarg

from .configuration_vcq import VCQConfig
from .generation import VCQMask
from .validation import check_number, explain_unreadable_weights


# Keywords of `from_pretrained` that locate the checkpoint (passed on when its config.json is read on its own).
_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "proxies", "revision", "subfolder", "token")


class VCQPreTrainedModel(LlamaPreTrainedModel):
    """Base class of the VCQ prior: Llama's weight init and loading machinery with a [`VCQConfig`]."""

    config_class = VCQConfig
    config: VCQConfig


class VCQForCausalLM(VCQPreTrainedModel, LlamaForCausalLM):
    r"""
    Class-conditional autoregressive prior over VCQ image codes: a Llama decoder whose sequences are
    `[class token, x_0, ..., x_{T-1}]` (see [`VCQConfig`] for the vocabulary layout).

    Training is `model(input_ids=ids, labels=ids)` with `ids = model.build_input_ids(class_labels, codes)`; the loss
    is the next-token cross-entropy on the T image tokens only. In training mode each class token is replaced by the
    null class token with probability `config.class_dropout_prob`.

    Sampling is the stock `model.generate(model.build_input_ids(class_labels))`: it generates the remaining image
    tokens up to `max_length = 1 + T` with the sampling defaults of `model.generation_config` and a [`VCQMask`] of
    `config.codebook_sizes` (added by the `_get_logits_processor` hook), so every output is a valid code sequence.
    Pass `guidance_scale=s` for classifier-free guidance; the null class is used as the unconditional prompt unless
    you pass `negative_prompt_ids`. `cache_implementation="static"` works too.

    Args:
        config ([`VCQConfig`]): the model configuration.

    Example:
        >>> import torch
        >>> from vcq_hf import VCQConfig, VCQForCausalLM
        >>> model = VCQForCausalLM(VCQConfig.from_preset("tiny"))
        >>> codes = torch.tensor([[1, 3, 7, 15, 0], [0, 0, 0, 0, 0]])
        >>> ids = model.build_input_ids([0, 2], codes)  # (2, 1 + 5)
        >>> model(input_ids=ids, labels=ids).loss.shape
        torch.Size([])
    """

    config_class = VCQConfig

    def __init__(self, config: VCQConfig):
        super().__init__(config)
        self.generation_config = self.default_generation_config(config)
        # The validated schedule, held by the model so that compiled forwards read an attribute (no cache lookup).
        self.codebook_schedule = config.codebook_schedule

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        r"""[`~transformers.PreTrainedModel.from_pretrained`], where `num_classes=N` changes the class count.

        The class count is part of the vocabulary (class tokens sit between the image codes and the null class
        token), so the saved checkpoint is loaded with its own class count and then resized with
        [`~VCQForCausalLM.resize_num_classes`]: the rows of image codes and of the kept classes are copied, new classes
        start as the null class, and the null class token moves to `codebook_size + N`. Every other keyword override
        is applied to the config before it is validated. A truncated or corrupt local weights file raises
        `CorruptWeightsError` naming the file.
        """
        num_classes = kwargs.pop("num_classes", None)
        config = kwargs.get("config")
        if isinstance(config, VCQConfig):  # e.g. AutoModelForCausalLM, which applies `num_classes` to the config
            hub_kwargs = {key: kwargs[key] for key in _HUB_KWARGS if key in kwargs}
            saved = VCQConfig.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
            if config.num_classes != saved.num_classes:
                num_classes = config.num_classes if num_classes is None else num_classes
                config = copy.deepcopy(config)
                config.num_classes, config.vocab_size = saved.num_classes, saved.vocab_size
                kwargs["config"] = config
        with explain_unreadable_weights(pretrained_model_name_or_path):  # name a truncated or corrupt file
            model = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        if num_classes is not None and num_classes != model.config.num_classes:
            model.resize_num_classes(num_classes)
        return model

    @torch.no_grad()
    def resize_num_classes(self, num_classes: int) -> None:
        """Change the number of classes in place, keeping what the model learned.

        Vocabulary rows (input embeddings and output head) of the image codes and of classes `[0, min(old, new))` are
        kept; the null class token moves from `codebook_size + old` to `codebook_size + new` with its rows; each new
        class starts as a copy of the null class, so before fine-tuning it samples from the unconditional model.
        `config.num_classes` and `config.vocab_size` follow, so `save_pretrained` writes a consistent checkpoint.

        Args:
            num_classes (`int`): the new number of classes, >= 1.

        Raises:
            `ValueError`: if `num_classes` is not an integer >= 1.
        """
        check_number("num_classes", num_classes, minimum=1, integer=True)
        config = self.config
        old_classes = config.num_classes
        if num_classes == old_classes:
            return
        codebook_size, kept = config.codebook_size, min(old_classes, num_classes)
        old_null, new_null = codebook_size + old_classes, codebook_size + num_classes

        def resized_rows(weight: torch.Tensor) -> torch.Tensor:  # (V_old, h) -> (V_new, h)
            rows = torch.cat(
                [
                    weight[: codebook_size + kept],  # image codes and kept classes
                    weight[old_null : old_null + 1].expand(num_classes - kept, -1),  # new classes = null class
                    weight[old_null : old_null + 1],  # the null class, moved
                ]
            )
            return rows.clone()

        input_rows = resized_rows(self.get_input_embeddings().weight)
        output_rows = resized_rows(self.get_output_embeddings().weight)
        self.resize_token_embeddings(new_null + 1, mean_resizing=False)
        self.get_input_embeddings().weight.copy_(input_rows)
        if self.get_output_embeddings().weight is not self.get_input_embeddings().weight:
            self.get_output_embeddings().weight.copy_(output_rows)
        config.num_classes = num_classes
        config.vocab_size = new_null + 1
        config.validate()

    @staticmethod
    def default_generation_config(config: VCQConfig) -> GenerationConfig:
        """Sampling defaults saved as `generation_config.json`: plain ancestral sampling up to the full sequence of
        1 + T tokens (`do_sample=True`, temperature 1, no top-k / top-p truncation, no guidance), no BOS/EOS/PAD.
        A trained checkpoint may add the `guidance_scale` (and `guidance_schedule`) it was evaluated with;
        `VCQPipeline` reads its defaults from here."""
        return GenerationConfig(
            do_sample=True,
            temperature=1.0,
            top_k=None,
            top_p=None,
            num_beams=1,
            max_length=1 + config.num_image_tokens,
            min_new_tokens=None,
            bos_token_id=None,
            eos_token_id=None,
            pad_token_id=None,
            use_cache=True,
        )

    # ------------------------------------------------------------------ helpers
    def _codebook_limits(self, device: torch.device) -> torch.Tensor:
        """K_t for t in [0, T) as a (T,) int64 tensor on `device` (cached by the config's schedule)."""
        return self.codebook_schedule.limits(device)

    def build_input_ids(
        self,
        class_labels: int | Sequence[int] | torch.Tensor,
        codes: torch.Tensor | None = None,
    ) -> torch.LongTensor:
        """Sequences `[class token, x_0, ..., x_{t-1}]` from class labels and (optionally) image codes.

        Args:
            class_labels (`int`, `list[int]` or `torch.LongTensor` of shape `(batch_size,)`):
                class labels in `[0, num_classes)`.
            codes (`torch.LongTensor` of shape `(batch_size, num_codes)`, *optional*):
                image codes with `codes[:, t] < K_t` and `num_codes <= num_image_tokens`; the full `(B, T)` codes of
                a tokenizer give a training sequence, `None` gives the `(B, 1)` prompt for `generate`.

        Returns:
            `torch.LongTensor` of shape `(batch_size, 1 + num_codes)`, on the device of `codes` (else of the model).
        """
        device = codes.device if codes is not None else self.device
        class_ids = torch.tensor(self.config.class_token_ids(class_labels), dtype=torch.long, device=device)
        prompt = class_ids[:, None]  # (B, 1)
        if codes is None:
            return prompt
        if codes.dim() != 2 or codes.shape[0] != prompt.shape[0]:
            raise ValueError(
                f"codes must have shape (batch_size={prompt.shape[0]}, num_codes), got {tuple(codes.shape)}."
            )
        if codes.shape[1] > self.config.num_image_tokens:
            raise ValueError(
                f"codes has {codes.shape[1]} positions but the model has num_image_tokens = "
                f"{self.config.num_image_tokens}."
            )
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise ValueError(f"codes must be an integer tensor, got dtype {codes.dtype}.")
        input_ids = torch.cat([prompt, codes.long()], dim=1)
        self.check_input_ids(input_ids)
        return input_ids

    def check_input_ids(self, input_ids: torch.Tensor, past_length: int = 0, name: str = "input_ids") -> None:
        """Check token ids against the sequence layout; `input_ids[:, j]` is at absolute position `past_length + j`.

        Position 0 must be a class token or the null class token; position `1 + t` must be an image code in
        `[0, K_t)`; at most `1 + num_image_tokens` positions. For `name="labels"`, -100 (ignored) is allowed
        everywhere and position 0 is not checked (it is never a target).

        Raises:
            `ValueError`: naming the first offending entry and its allowed range.
        """
        config = self.config
        self._check_sequence_length(past_length + input_ids.shape[-1], name)
        if input_ids.numel() == 0 or torch.compiler.is_compiling():
            return  # value checks are data-dependent branches (graph breaks); under compile only the length is checked
        is_labels = name == "labels"
        image_start = max(0, 1 - past_length)  # first column holding an image token
        if past_length == 0 and not is_labels:
            class_column = input_ids[:, 0]
            bad = (class_column < config.codebook_size) | (class_column > config.null_class_token_id)
            if bool(bad.any()):
                row = int(bad.nonzero()[0, 0])
                raise ValueError(
                    f"{name}[{row}, 0] = {int(class_column[row])} is not a class token: position 0 must hold a class "
                    f"token in [{config.codebook_size}, {config.codebook_size + config.num_classes}) or the null "
                    f"class token {config.null_class_token_id}. Use model.build_input_ids(class_labels, codes)."
                )
        image_ids = input_ids[:, image_start:]
        if image_ids.shape[-1] == 0:
            return
        self.codebook_schedule.check_codes(
            image_ids,
            first_position=past_length + image_start - 1,
            name=name,
            column_offset=image_start,
            ignore_index=-100 if is_labels else None,
        )

    def _check_sequence_length(self, length: int, name: str = "input_ids") -> None:
        if length > 1 + self.config.num_image_tokens:
            raise ValueError(
                f"{name} reaches sequence length {length}, but a VCQ sequence has at most 1 + num_image_tokens = "
                f"{1 + self.config.num_image_tokens} tokens (class token + image tokens)."
            )

    def _class_dropout(self, input_ids: torch.LongTensor) -> torch.LongTensor:
        """Replace each class token at position 0 by the null class with probability `class_dropout_prob`."""
        drop = torch.rand(input_ids.shape[0], device=input_ids.device) < self.config.class_dropout_prob  # (B,)
        null_ids = torch.full_like(input_ids[:, 0], self.config.null_class_token_id)
        first = torch.where(drop, null_ids, input_ids[:, 0])
        return torch.cat([first[:, None], input_ids[:, 1:]], dim=1)

    def image_token_loss(
        self, logits: torch.Tensor, labels: torch.LongTensor, num_items_in_batch: int | torch.Tensor | None = None
    ) -> torch.Tensor:
        """Next-token cross-entropy on the image tokens of full sequences starting at position 0.

        `logits[:, j]` predicts `labels[:, j + 1]`, the image token at position t = j; `labels[:, 0]` (the class
        token) is never a target, and -100 entries are ignored. With `config.mask_logits_in_loss` the softmax at
        position t runs over `[0, K_t)` only.

        Args:
            logits (`torch.Tensor` of shape `(batch_size, sequence_length, vocab_size)`).
            labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`).
            num_items_in_batch (`int`, *optional*): if given (gradient accumulation), the summed loss is divided by
                it instead of by the number of targets in this batch.

        Returns:
            `torch.Tensor`: the scalar loss.
        """
        shift_logits = logits[:, :-1].float()  # (B, L-1, V): position t predicts image token x_t
        shift_labels = labels[:, 1:]  # (B, L-1)
        if self.config.mask_logits_in_loss:
            schedule = self.codebook_schedule
            outside = schedule.outside_mask(shift_logits.shape[-1], logits.device)[: shift_logits.shape[1]]  # (L-1, V)
            shift_logits = shift_logits.masked_fill(outside[None], -float("inf"))
        reduction = "sum" if num_items_in_batch is not None else "mean"
        loss = F.cross_entropy(
            shift_logits.reshape(-1, shift_logits.shape[-1]),
            shift_labels.reshape(-1).to(logits.device),
            ignore_index=-100,
            reduction=reduction,
        )
        if num_items_in_batch is not None:
            loss = loss / num_items_in_batch
        return loss

    # ------------------------------------------------------------------ forward
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        vocab_limit: int | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
                `[class token, x_0, ...]` (or, with `cache`, the next tokens). Checked for the full sequence and for
                a prefill: position 0 a class/null token, image code x_t in `[0, K_t)`, at most 1 + T tokens.
            labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
                Usually `input_ids` itself; the loss is the next-token cross-entropy on the image tokens only
                (entries -100 are ignored). Needs full sequences starting at the class token (no `cache`).
                The loss always uses the full-vocabulary logits.
            vocab_limit (`int`, *optional*):
                The schedule-aware head for sampling: compute logits only for the ids `[0, vocab_limit)`, a slice of
                the head's weight rows (at image position t pass K_t: the other ids are masked anyway). Not with
                `labels`.
            Other arguments are those of [`~transformers.LlamaForCausalLM.forward`].

        Returns:
            [`~transformers.modeling_outputs.CausalLMOutputWithPast`]: `loss` (if `labels`), `logits` of shape
            `(batch_size, sequence_length, vocab_size)` over the whole vocabulary (never masked; `vocab_limit`
            columns with `vocab_limit`), `cache`.
        """
        if not torch.compiler.is_compiling():  # data-dependent checks would break a compiled graph
            self._check_forward_inputs(input_ids, cache, labels, vocab_limit)
        if self.training and input_ids is not None and cache is None and self.config.class_dropout_prob > 0:
            input_ids = self._class_dropout(input_ids)

        num_items_in_batch = kwargs.pop("num_items_in_batch", None)
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        hidden_states = slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep)
        if vocab_limit is None:
            logits = self.lm_head(hidden_states)  # (B, L, V)
        else:
            logits = F.linear(hidden_states, self.lm_head.weight[:vocab_limit])  # (B, L, vocab_limit)
        loss = None
        if labels is not None:
            if logits.shape[1] != labels.shape[1]:
                raise ValueError(
                    f"labels cover {labels.shape[1]} positions but logits only {logits.shape[1]}; "
                    "use logits_to_keep=0 for training."
                )
            loss = self.image_token_loss(logits, labels, num_items_in_batch)
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )

    def _check_forward_inputs(
        self,
        input_ids: torch.LongTensor | None,
        cache: Cache | None,
        labels: torch.LongTensor | None,
        vocab_limit: int | None,
    ) -> None:
        if vocab_limit is not None:
            if isinstance(vocab_limit, bool) or not isinstance(vocab_limit, int):
                raise ValueError(f"vocab_limit = {vocab_limit!r} must be an int in [1, {self.config.vocab_size}].")
            if not 1 <= vocab_limit <= self.config.vocab_size:
                raise ValueError(
                    f"vocab_limit = {vocab_limit} is out of range: it must be in [1, vocab_size = "
                    f"{self.config.vocab_size}]."
                )
            if labels is not None:
                raise ValueError("vocab_limit is for sampling; the training loss needs the full-vocabulary logits.")
        past_length = 0 if cache is None else int(cache.get_seq_length())
        if input_ids is not None and (past_length == 0 or labels is not None):
            self.check_input_ids(input_ids, past_length=past_length)
        elif input_ids is not None:  # decoding step: tokens come from the (masked) sampler; check only the length
            self._check_sequence_length(past_length + input_ids.shape[-1])
        if labels is not None:
            if past_length != 0:
                raise ValueError(
                    f"labels need the full sequence from the class token on, but a cache of length {past_length} "
                    "was given; call the model without `cache` for training."
                )
            if input_ids is not None and labels.shape != input_ids.shape:
                raise ValueError(
                    f"labels shape {tuple(labels.shape)} must equal input_ids shape {tuple(input_ids.shape)}."
                )
            self.check_input_ids(labels, name="labels")

    # ------------------------------------------------------------------ generate
    def _get_logits_processor(
        self,
        generation_config: GenerationConfig,
        input_ids_seq_length: int | None = None,
        encoder_input_ids: torch.LongTensor | None = None,
        prefix_allowed_tokens_fn: Callable[[int, torch.Tensor], list[int]] | None = None,
        logits_processor: LogitsProcessorList | None = None,
        device: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        negative_prompt_ids: torch.Tensor | None = None,
        negative_prompt_attention_mask: torch.Tensor | None = None,
    ) -> LogitsProcessorList:
        """The transformers hook for model-specific processors (as Dia's): `generate` always applies this model's
        [`VCQMask`], so every output is a valid code sequence, and guidance uses the null class as its
        unconditional prompt (stock transformers would take the last prompt token, the class token itself).

        `logits_processor` may be a single processor; a `VCQMask()` without a schedule in it stands for this mask,
        one with its own schedule is kept as given. The mask runs after guidance (`-inf - -inf` would be NaN) and before the sampling warpers.
        """
        if isinstance(logits_processor, LogitsProcessor):  # a bare processor, as in `logits_processor=VCQMask()`
            logits_processor = [logits_processor]
        processors = LogitsProcessorList(
            processor
            for processor in (logits_processor or [])
            if not (isinstance(processor, VCQMask) and processor.codebook_sizes is None)
        )
        if not any(isinstance(processor, VCQMask) for processor in processors):
            processors.append(VCQMask(codebook_sizes=self.codebook_schedule, prompt_length=1))
        guided = generation_config.guidance_scale is not None and generation_config.guidance_scale != 1
        if guided and negative_prompt_ids is None and encoder_input_ids is not None:
            negative_prompt_ids = encoder_input_ids.clone()
            negative_prompt_ids[:, 0] = self.config.null_class_token_id
        if guided and negative_prompt_ids is not None and encoder_input_ids is not None:
            expand = max(generation_config.num_beams or 1, generation_config.num_return_sequences or 1)
            if expand > 1 and negative_prompt_ids.shape[0] == encoder_input_ids.shape[0]:
                negative_prompt_ids = negative_prompt_ids.repeat_interleave(expand, dim=0)
                if negative_prompt_attention_mask is not None:
                    negative_prompt_attention_mask = negative_prompt_attention_mask.repeat_interleave(expand, dim=0)
        return super()._get_logits_processor(
            generation_config=generation_config,
            input_ids_seq_length=input_ids_seq_length,
            encoder_input_ids=encoder_input_ids,
            prefix_allowed_tokens_fn=prefix_allowed_tokens_fn,
            logits_processor=processors,
            device=device,
            model_kwargs=model_kwargs,
            negative_prompt_ids=negative_prompt_ids,
            negative_prompt_attention_mask=negative_prompt_attention_mask,
        )


AutoModelForCausalLM.register(VCQConfig, VCQForCausalLM, exist_ok=True)
VCQConfig.register_for_auto_class()
VCQForCausalLM.register_for_auto_class("AutoModelForCausalLM")

__all__ = ["VCQForCausalLM", "VCQPreTrainedModel"]
