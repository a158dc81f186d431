"""Configuration of the VCQ image tokenizer (`VCQVQModel`), a TiTok-style 1D ViT with a variable-codebook quantizer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from transformers import AutoConfig, PreTrainedConfig

from .presets import PresetMixin
from .schedules import SCHEDULE_KINDS, validate_codebook_sizes
from .schedules import codebook_sizes as schedule_codebook_sizes


RECONSTRUCTION_LOSS_TYPES: tuple[str, ...] = ("mse", "l1")
_INT_FIELDS: tuple[str, ...] = (
    "image_size",
    "num_channels",
    "patch_size",
    "num_tokens",
    "encoder_hidden_size",
    "encoder_num_layers",
    "encoder_num_heads",
    "decoder_hidden_size",
    "decoder_num_layers",
    "decoder_num_heads",
    "codebook_size",
    "codebook_dim",
)


def _check_int(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} = {value!r} is out of range: it must be an integer >= {minimum}.")


def _check_float(name: str, value: Any, minimum: float = 0.0, strict: bool = False) -> None:
    bad_type = isinstance(value, bool) or not isinstance(value, (int, float))
    if bad_type or value < minimum or (strict and value == minimum):
        bound = f"> {minimum}" if strict else f">= {minimum}"
        raise ValueError(f"{name} = {value!r} is out of range: it must be a number {bound}.")


class VCQVQConfig(PresetMixin, PreTrainedConfig):
    r"""Configuration of [`VCQVQModel`], the VCQ image tokenizer.

    The tokenizer is a 1D ViT in the TiTok style: the encoder reads `(image_size / patch_size) ** 2` patch embeddings
    plus `num_tokens` learned latent tokens; the latent outputs are projected to `codebook_dim` and quantized by a
    `VariableCodebookQuantizer` in which position t picks among the first `codebook_sizes[t]` entries of one shared
    codebook of `codebook_size` (K_max) entries. The decoder reads one mask token per patch plus the quantized latents
    projected up and predicts the pixels of each patch.

    The per-position sizes are stored explicitly in `codebook_sizes` (and so in `config.json`): a checkpoint never
    depends on the schedule formula. When `codebook_sizes` is not given it is derived from `k_min`, `codebook_size`,
    `schedule` and `ramp_length` with `vcq_hf.schedules.codebook_sizes`; when it is given it wins over those fields.

    Args:
        image_size (`int`, *optional*, defaults to 32): side of the square input images, a multiple of `patch_size`.
        num_channels (`int`, *optional*, defaults to 3): channels of the input images.
        patch_size (`int`, *optional*, defaults to 4): side of the square patches.
        num_tokens (`int`, *optional*, defaults to 32): number T of image tokens (codes) per image.
        encoder_hidden_size (`int`, *optional*, defaults to 192): width of the encoder ViT.
        encoder_num_layers (`int`, *optional*, defaults to 4): depth of the encoder ViT.
        encoder_num_heads (`int`, *optional*, defaults to 4): attention heads of the encoder, divides its width.
        decoder_hidden_size (`int`, *optional*, defaults to 192): width of the decoder ViT.
        decoder_num_layers (`int`, *optional*, defaults to 4): depth of the decoder ViT.
        decoder_num_heads (`int`, *optional*, defaults to 4): attention heads of the decoder, divides its width.
        mlp_ratio (`float`, *optional*, defaults to 4.0): MLP width as a multiple of the hidden size.
        layer_norm_eps (`float`, *optional*, defaults to 1e-6): epsilon of the layer norms.
        initializer_range (`float`, *optional*, defaults to 0.02): std of the truncated-normal weight init.
        codebook_size (`int`, *optional*, defaults to 1024): K_max, entries of the shared codebook.
        codebook_dim (`int`, *optional*, defaults to 12): dimension of the codebook entries.
        k_min (`int`, *optional*, defaults to 2): K at the first position of a ramped schedule, in [1, K_max].
        schedule (`str`, *optional*, defaults to `"log"`): one of `"constant"` (the uniform baseline), `"linear"`,
            `"log"`, `"cosine"`; see `vcq_hf.schedules.codebook_sizes`.
        ramp_length (`int`, *optional*): 1-based position where the schedule reaches K_max; defaults to `num_tokens`.
        codebook_sizes (`list[int]`, *optional*): explicit K_t per position (length `num_tokens`, monotone, last entry
            equal to `codebook_size`). Derived from the schedule fields when not given.
        use_l2_norm (`bool`, *optional*, defaults to `True`): cosine (l2-normalised) codebook lookup.
        commitment_weight (`float`, *optional*, defaults to 0.25): beta, the weight of the commitment term (the one
            that moves the encoder).
        entropy_weight (`float`, *optional*, defaults to 0.0): weight of the per-position entropy regulariser.
        entropy_temperature (`float`, *optional*, defaults to 0.01): temperature of its soft assignments.
        usage_decay (`float`, *optional*, defaults to 0.99): EMA decay of the code usage used for dead-code restarts.
        reconstruction_loss_type (`str`, *optional*, defaults to `"mse"`): `"mse"` or `"l1"` pixel loss.
        quantizer_loss_weight (`float`, *optional*, defaults to 1.0): weight of the quantizer loss in the total loss.

    Example:

    ```python
    >>> from vcq_hf import VCQVQConfig, VCQVQModel
    >>> config = VCQVQConfig.from_preset("tiny")
    >>> config.codebook_sizes
    [3, 6, 11, 20, 37]
    >>> model = VCQVQModel(config)

    ```
    """

    model_type = "vcq_vq"

    presets: ClassVar[dict[str, dict[str, Any]]] = {
        # Odd sizes everywhere, for tests: 9 patches of 4x4 and 5 tokens, runs in milliseconds.
        "tiny": dict(
            image_size=12,
            patch_size=4,
            num_tokens=5,
            encoder_hidden_size=30,
            encoder_num_layers=1,
            encoder_num_heads=3,
            decoder_hidden_size=30,
            decoder_num_layers=1,
            decoder_num_heads=3,
            mlp_ratio=2.0,
            codebook_size=37,
            codebook_dim=5,
            k_min=3,
            schedule="log",
        ),
        # The demo data (Fashion-MNIST, emoji, digits at 32x32 RGB): ~1.7M parameters. 8x8 patches keep the
        # sequence at 16 patches + 32 latents, 3x cheaper than 4x4 patches: ~70 train images/s per CPU core.
        "small-32px": dict(
            image_size=32,
            patch_size=8,
            num_tokens=32,
            encoder_hidden_size=128,
            encoder_num_layers=4,
            encoder_num_heads=4,
            decoder_hidden_size=128,
            decoder_num_layers=4,
            decoder_num_heads=4,
            mlp_ratio=4.0,
            codebook_size=1024,
            codebook_dim=12,
            k_min=2,
            schedule="log",
        ),
        # The paper's setting: 256x256 ImageNet, 16x16 patches, 256 tokens, K_max = 16384, 8-dim codes (TiTok-B-like).
        "imagenet-256": dict(
            image_size=256,
            patch_size=16,
            num_tokens=256,
            encoder_hidden_size=768,
            encoder_num_layers=12,
            encoder_num_heads=12,
            decoder_hidden_size=768,
            decoder_num_layers=12,
            decoder_num_heads=12,
            mlp_ratio=4.0,
            codebook_size=16384,
            codebook_dim=8,
            k_min=2,
            schedule="log",
        ),
    }

    def __init__(
        self,
        image_size: int = 32,
        num_channels: int = 3,
        patch_size: int = 4,
        num_tokens: int = 32,
        encoder_hidden_size: int = 192,
        encoder_num_layers: int = 4,
        encoder_num_heads: int = 4,
        decoder_hidden_size: int = 192,
        decoder_num_layers: int = 4,
        decoder_num_heads: int = 4,
        mlp_ratio: float = 4.0,
        layer_norm_eps: float = 1e-6,
        initializer_range: float = 0.02,
        codebook_size: int = 1024,
        codebook_dim: int = 12,
        k_min: int = 2,
        schedule: str = "log",
        ramp_length: int | None = None,
        codebook_sizes: Sequence[int] | None = None,
        use_l2_norm: bool = True,
        commitment_weight: float = 0.25,
        entropy_weight: float = 0.0,
        entropy_temperature: float = 0.01,
        usage_decay: float = 0.99,
        reconstruction_loss_type: str = "mse",
        quantizer_loss_weight: float = 1.0,
        **kwargs: Any,
    ):
        self.image_size = image_size
        self.num_channels = num_channels
        self.patch_size = patch_size
        self.num_tokens = num_tokens
        self.encoder_hidden_size = encoder_hidden_size
        self.encoder_num_layers = encoder_num_layers
        self.encoder_num_heads = encoder_num_heads
        self.decoder_hidden_size = decoder_hidden_size
        self.decoder_num_layers = decoder_num_layers
        self.decoder_num_heads = decoder_num_heads
        self.mlp_ratio = mlp_ratio
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        self.codebook_size = codebook_size
        self.codebook_dim = codebook_dim
        self.k_min = k_min
        self.schedule = schedule
        self.ramp_length = ramp_length
        self.codebook_sizes = codebook_sizes
        self.use_l2_norm = use_l2_norm
        self.commitment_weight = commitment_weight
        self.entropy_weight = entropy_weight
        self.entropy_temperature = entropy_temperature
        self.usage_decay = usage_decay
        self.reconstruction_loss_type = reconstruction_loss_type
        self.quantizer_loss_weight = quantizer_loss_weight
        self.verify()
        super().__init__(**kwargs)

    def verify(self) -> None:
        """Check every field and derive `codebook_sizes` from the schedule fields when it is `None`.

        Runs at construction; run it again after setting attributes directly (as `from_pretrained(path, **overrides)`
        does), which bypasses `__init__`. `VCQVQModel` calls it before building its layers.

        Raises:
            `ValueError`: naming the bad value and the allowed range.
        """
        for name in _INT_FIELDS:
            _check_int(name, getattr(self, name))
        image_size, patch_size, num_tokens = self.image_size, self.patch_size, self.num_tokens
        if image_size % patch_size != 0:
            raise ValueError(
                f"patch_size = {patch_size} must divide image_size = {image_size} "
                f"(image_size % patch_size = {image_size % patch_size})."
            )
        for part in ("encoder", "decoder"):
            hidden, heads = getattr(self, f"{part}_hidden_size"), getattr(self, f"{part}_num_heads")
            if hidden % heads != 0:
                raise ValueError(
                    f"{part}_num_heads = {heads} must divide {part}_hidden_size = {hidden} "
                    f"({hidden} % {heads} = {hidden % heads})."
                )
        _check_float("mlp_ratio", self.mlp_ratio, strict=True)
        if min(self.encoder_hidden_size, self.decoder_hidden_size) * self.mlp_ratio < 0.5:
            raise ValueError(f"mlp_ratio = {self.mlp_ratio} is too small: the MLP width rounds to 0.")
        _check_float("layer_norm_eps", self.layer_norm_eps, strict=True)
        _check_float("initializer_range", self.initializer_range, strict=True)
        codebook_size, k_min, ramp_length = self.codebook_size, self.k_min, self.ramp_length
        _check_int("k_min", k_min)
        if k_min > codebook_size:
            raise ValueError(f"k_min = {k_min} is out of range: it must be in [1, codebook_size = {codebook_size}].")
        if self.schedule not in SCHEDULE_KINDS:
            raise ValueError(f"schedule = {self.schedule!r} is not a schedule kind; expected one of {SCHEDULE_KINDS}.")
        if ramp_length is not None:
            _check_int("ramp_length", ramp_length)
            if ramp_length > num_tokens:
                raise ValueError(
                    f"ramp_length = {ramp_length} is out of range: it must be in [1, num_tokens = {num_tokens}]."
                )
        if self.codebook_sizes is None:
            sizes = schedule_codebook_sizes(num_tokens, k_min, codebook_size, self.schedule, ramp_length)
        else:
            sizes = validate_codebook_sizes(self.codebook_sizes, num_tokens=num_tokens, k_min=1, k_max=codebook_size)
            if sizes[-1] != codebook_size:
                raise ValueError(
                    f"codebook_sizes[-1] = {sizes[-1]} must equal codebook_size = {codebook_size} (K_max, the size of "
                    "the shared codebook); set codebook_size to the largest entry of codebook_sizes."
                )
        if not isinstance(self.use_l2_norm, bool):
            raise ValueError(f"use_l2_norm = {self.use_l2_norm!r} must be a bool.")
        for name in ("commitment_weight", "entropy_weight", "usage_decay", "quantizer_loss_weight"):
            _check_float(name, getattr(self, name))
        _check_float("entropy_temperature", self.entropy_temperature, strict=True)
        if self.usage_decay >= 1.0:
            raise ValueError(f"usage_decay = {self.usage_decay} is out of range: it must be in [0, 1).")
        if self.reconstruction_loss_type not in RECONSTRUCTION_LOSS_TYPES:
            raise ValueError(
                f"reconstruction_loss_type = {self.reconstruction_loss_type!r} is not supported; expected one of "
                f"{RECONSTRUCTION_LOSS_TYPES}."
            )
        self.codebook_sizes = list(sizes)

    @property
    def num_patches(self) -> int:
        """Number of patches per image, `(image_size // patch_size) ** 2`."""
        return (self.image_size // self.patch_size) ** 2


VCQVQConfig.register_for_auto_class()
AutoConfig.register(VCQVQConfig.model_type, VCQVQConfig, exist_ok=True)


__all__ = ["VCQVQConfig"]
