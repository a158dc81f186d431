"""Configuration of the VCQ autoregressive prior, a Llama decoder over class tokens and variable-size image codes.

Vocabulary layout (one shared embedding table and one output head):

| ids | meaning |
| --- | --- |
| `[0, codebook_size)` | image codes; position t may only use `[0, codebook_sizes[t])` |
| `codebook_size + c` for `c` in `[0, num_classes)` | class token of class `c` |
| `codebook_size + num_classes` | the null ("unconditional") class token used for classifier-free guidance |

A training sequence is `[class token, x_0, ..., x_{T-1}]` with `T = num_image_tokens`.
"""

from collections.abc import Iterable
from typing import Any, ClassVar

from huggingface_hub.dataclasses import strict, validated_field
from transformers import AutoConfig, LlamaConfig

from .presets import PresetMixin
from .schedules import DEFAULT_SCHEDULE, CodebookSchedule
from .schedules import codebook_sizes as make_codebook_sizes
from .validation import check_number, number_validator


def llamagen_intermediate_size(hidden_size: int, multiple_of: int = 256) -> int:
    """SwiGLU width used by LlamaGen's GPT models: 2/3 of 4 * hidden, rounded up to a multiple of `multiple_of`.

    Example:
        >>> llamagen_intermediate_size(768), llamagen_intermediate_size(1024), llamagen_intermediate_size(1280)
        (2048, 2816, 3584)
    """
    hidden = int(2 * (4 * hidden_size) / 3)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


def _imagenet_schedule() -> list[int]:
    # T = 256, K_max = 16384, the default schedule kind from K_min = 2 over all positions, as in the tokenizer's
    # `imagenet-256` preset.
    return list(make_codebook_sizes(256, 2, 16384, DEFAULT_SCHEDULE))


def _llamagen_preset(hidden_size: int, num_layers: int, num_heads: int) -> dict[str, Any]:
    return {
        "hidden_size": hidden_size,
        "intermediate_size": llamagen_intermediate_size(hidden_size),
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "codebook_size": 16384,
        "codebook_sizes": _imagenet_schedule(),
        "num_image_tokens": 256,
        "num_classes": 1000,
        "class_dropout_prob": 0.1,
    }


@strict
class VCQConfig(PresetMixin, LlamaConfig):
    r"""
    Configuration of [`VCQForCausalLM`], the class-conditional autoregressive prior over VCQ image codes. It is a
    [`~transformers.LlamaConfig`] (all Llama fields apply) plus the image-token fields below; the vocabulary size,
    the maximum sequence length and the special token ids are derived from them.

    Presets (`VCQConfig.from_preset(name, **overrides)`; parameter counts with K_max = 16384, 1000 classes, T = 256,
    untied input/output embeddings over the 17,385-token vocabulary):

    | preset | hidden | layers | heads | intermediate | parameters |
    | --- | --- | --- | --- | --- | --- |
    | `tiny` | 24 | 2 | 2 (1 KV head) | 40 | 10.3k (tests; T = 5, K_max = 16, 3 classes) |
    | `small` | 256 | 4 | 4 | 768 | 3.94M (32x32 demo data; T = 32, K_max = 1024, 10 classes) |
    | `vcq-b` | 768 | 12 | 12 | 2048 | 111.66M (LlamaGen GPT-B) |
    | `vcq-l` | 1024 | 24 | 16 | 2816 | 343.94M (LlamaGen GPT-L) |
    | `vcq-xl` | 1280 | 36 | 20 | 3584 | 775.98M (LlamaGen GPT-XL) |
    | `vcq-684m` | 1280 | 32 | 20 | 3504 | 684.88M (the paper's model size: GPT-XL width, 32 layers, MLP 3504 = 16 * 219) |

    The LlamaGen presets use LlamaGen's SwiGLU rule (`llamagen_intermediate_size`). Every preset's schedule is the
    log schedule from K_min = 2 to K_max over all T positions, the one of the tokenizer presets `small-32px` and
    `imagenet-256`; for any other tokenizer take its schedule with `VCQConfig.from_vq_config(vq_config, preset=...)`.

    Args:
        codebook_size (`int`, *optional*, defaults to 16384):
            K_max, the size of the shared image codebook; image codes are the ids `[0, codebook_size)`.
        codebook_sizes (`list[int]`, *optional*):
            K_t for each image position t: monotone non-decreasing, `num_image_tokens` entries in
            `[1, codebook_size]`, the last equal to `codebook_size`. Defaults to the constant schedule
            `[codebook_size] * num_image_tokens` (the uniform-codebook baseline). Must equal the tokenizer's.
        num_image_tokens (`int`, *optional*, defaults to 256):
            T, the number of image tokens per image.
        num_classes (`int`, *optional*, defaults to 1000):
            Number of classes; class `c` is the token `codebook_size + c`.
        class_dropout_prob (`float`, *optional*, defaults to 0.1):
            Probability, in training mode only, of replacing a class token by the null class token, so that one model
            learns both the conditional and the unconditional distribution (needed for classifier-free guidance).
        mask_logits_in_loss (`bool`, *optional*, defaults to `False`):
            Ablation: restrict the training softmax at image position t to `[0, K_t)`. Off by default, as in the
            paper, where the loss is the plain next-token cross-entropy over the whole vocabulary.
        vocab_size (`int`, *optional*):
            Derived: `codebook_size + num_classes + 1`. If given it must equal that value.
        max_position_embeddings (`int`, *optional*):
            Defaults to `1 + num_image_tokens` (class token + image tokens); must be at least that.
        kwargs:
            Any other [`~transformers.LlamaConfig`] field (hidden_size, num_hidden_layers, ...).

    Example:
        >>> from vcq_hf import VCQConfig
        >>> config = VCQConfig.from_preset("tiny")
        >>> config.vocab_size, config.class_token_ids([0, 2]), config.null_class_token_id
        (20, [16, 18], 19)
    """

    model_type = "vcq"

    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {
            "hidden_size": 24,
            "intermediate_size": 40,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "codebook_size": 16,
            "codebook_sizes": [2, 4, 8, 16, 16],
            "num_image_tokens": 5,
            "num_classes": 3,
            "class_dropout_prob": 0.1,
        },
        "small": {
            "hidden_size": 256,
            "intermediate_size": llamagen_intermediate_size(256),
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "codebook_size": 1024,
            "codebook_sizes": list(make_codebook_sizes(32, 2, 1024, DEFAULT_SCHEDULE)),  # = VCQVQConfig "small-32px"
            "num_image_tokens": 32,
            "num_classes": 10,
            "class_dropout_prob": 0.1,
        },
        "vcq-b": _llamagen_preset(768, 12, 12),
        "vcq-l": _llamagen_preset(1024, 24, 16),
        "vcq-xl": _llamagen_preset(1280, 36, 20),
        "vcq-684m": {**_llamagen_preset(1280, 32, 20), "intermediate_size": 3504},
    }

    # Llama defaults overridden: derived from the image fields in `__post_init__`.
    vocab_size: int | None = None
    max_position_embeddings: int | None = None
    # No BOS/EOS/PAD: ids 1 and 2 (Llama's defaults) are image codes here; sequences always have 1 + T tokens.
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    # LlamaGen-B sized defaults instead of Llama-7B.
    hidden_size: int = 768
    intermediate_size: int = 2048
    num_hidden_layers: int = 12
    num_attention_heads: int = 12

    codebook_size: int = validated_field(number_validator("codebook_size", minimum=1, integer=True), default=16384)
    codebook_sizes: list[int] | tuple[int, ...] | None = None
    num_image_tokens: int = validated_field(number_validator("num_image_tokens", minimum=1, integer=True), default=256)
    num_classes: int = validated_field(number_validator("num_classes", minimum=1, integer=True), default=1000)
    class_dropout_prob: float | int = validated_field(
        number_validator("class_dropout_prob", minimum=0.0, maximum=1.0), default=0.1
    )
    mask_logits_in_loss: bool = False

    def __post_init__(self, **kwargs):
        # Single fields were checked when they were set; derive the rest here and check how they fit together in
        # `validate_vcq_fields` (run by `@strict` right after, after `from_pretrained` overrides, and at save).
        if self.codebook_sizes is None:
            self.codebook_sizes = [self.codebook_size] * self.num_image_tokens
        else:
            try:  # validated once here; a bad schedule is reported by the class validator
                self.codebook_sizes = self.codebook_schedule.to_list()  # stored as a JSON list of ints
            except (ValueError, TypeError):
                pass
        if self.vocab_size is None:
            self.vocab_size = self.codebook_size + self.num_classes + 1
        if self.max_position_embeddings is None:
            self.max_position_embeddings = 1 + self.num_image_tokens
        super().__post_init__(**kwargs)

    @property
    def codebook_schedule(self) -> CodebookSchedule:
        """The validated, immutable [`~vcq_hf.schedules.CodebookSchedule`] of `codebook_sizes` (shared and cached
        per distinct schedule): what the model's input checks, the masked loss and `VCQMask` consume."""
        return CodebookSchedule.cached(self.codebook_sizes)

    def validate_vcq_fields(self) -> None:
        """Part of `@strict` validation: the image fields agree with each other and with the derived Llama fields."""
        schedule = self.codebook_schedule
        if len(schedule) != self.num_image_tokens:
            raise ValueError(
                f"codebook_sizes has {len(schedule)} entries but num_image_tokens is {self.num_image_tokens}: give "
                "one codebook size per image position."
            )
        if schedule.k_max != self.codebook_size:
            raise ValueError(
                f"codebook_sizes ends at {schedule.k_max} but codebook_size (K_max) is {self.codebook_size}: "
                "the largest per-position size must equal codebook_size."
            )
        expected_vocab = self.codebook_size + self.num_classes + 1
        if self.vocab_size != expected_vocab:
            raise ValueError(
                f"vocab_size = {self.vocab_size} does not match codebook_size + num_classes + 1 = "
                f"{self.codebook_size} + {self.num_classes} + 1 = {expected_vocab}; leave vocab_size unset to derive it."
            )
        if self.max_position_embeddings < 1 + self.num_image_tokens:
            raise ValueError(
                f"max_position_embeddings = {self.max_position_embeddings} is too small: a sequence is 1 class token "
                f"+ {self.num_image_tokens} image tokens, so it must be >= {1 + self.num_image_tokens}."
            )

    def validate_finite_floats(self) -> None:
        """Part of `@strict` validation: Llama's float fields are finite and in range (NaN passes `x < lo`)."""
        check_number("rms_norm_eps", self.rms_norm_eps, minimum=0.0, exclusive_minimum=True)
        check_number("initializer_range", self.initializer_range, minimum=0.0)
        if self.attention_dropout is not None:
            check_number("attention_dropout", self.attention_dropout, minimum=0.0, maximum=1.0)

    @classmethod
    def _fields_derived_from(cls, name: str) -> tuple[str, ...]:
        # `from_pretrained(path, num_classes=N)` re-derives the vocabulary instead of keeping the stored one.
        derived = {
            "codebook_size": ("vocab_size",),
            "num_classes": ("vocab_size",),
            "num_image_tokens": ("max_position_embeddings",),
            "hidden_size": ("head_dim",),
            "num_attention_heads": ("head_dim",),
        }
        return derived.get(name, ())

    @classmethod
    def from_vq_config(cls, vq_config: Any, **kwargs: Any) -> "VCQConfig":
        """Build a prior config whose image fields (`codebook_size`, `codebook_sizes`, `num_image_tokens`) are taken
        from a tokenizer config (e.g. `VCQVQConfig`), so that both agree by construction.

        Args:
            vq_config: any object with `codebook_size`, `codebook_sizes` and `num_image_tokens` (e.g. a
                `VCQVQConfig`; objects that only have the old name `num_tokens` are accepted too).
            kwargs: other `VCQConfig` fields (or `preset="name"` to start from a preset).
        """
        num_image_tokens = getattr(vq_config, "num_image_tokens", None)
        if num_image_tokens is None:
            num_image_tokens = vq_config.num_tokens
        image_fields = {
            "codebook_size": int(vq_config.codebook_size),
            "codebook_sizes": [int(size) for size in vq_config.codebook_sizes],
            "num_image_tokens": int(num_image_tokens),
        }
        preset = kwargs.pop("preset", None)
        if preset is not None:
            return cls.from_preset(preset, **image_fields, **kwargs)
        return cls(**image_fields, **kwargs)

    @property
    def class_token_offset(self) -> int:
        """Id of the class token of class 0 (= `codebook_size`)."""
        return self.codebook_size

    @property
    def null_class_token_id(self) -> int:
        """Id of the null (unconditional) class token: `codebook_size + num_classes`."""
        return self.codebook_size + self.num_classes

    def class_token_ids(self, labels: int | Iterable[int]) -> list[int]:
        """Token ids of class labels: `codebook_size + label`.

        Args:
            labels (`int`, `list[int]` or 1-D `torch.Tensor`): class labels in `[0, num_classes)`.

        Returns:
            `list[int]`: one token id per label.

        Raises:
            `ValueError`: if a label is outside `[0, num_classes)`.
        """
        if hasattr(labels, "tolist"):
            labels = labels.tolist()
        if isinstance(labels, int):
            labels = [labels]
        ids = []
        for index, label in enumerate(labels):
            if isinstance(label, bool) or not float(label).is_integer():
                raise ValueError(f"class label at index {index} is {label!r}, not an integer.")
            label = int(label)
            if not 0 <= label < self.num_classes:
                raise ValueError(
                    f"class label at index {index} is {label}, outside the allowed range [0, {self.num_classes})."
                )
            ids.append(self.codebook_size + label)
        return ids


AutoConfig.register("vcq", VCQConfig, exist_ok=True)

__all__ = ["VCQConfig", "llamagen_intermediate_size"]
