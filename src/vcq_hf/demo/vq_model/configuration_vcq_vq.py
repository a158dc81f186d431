"""Configuration of the VCQ image tokenizer (`VCQVQModel`), a TiTok-style 1D ViT with a variable-codebook quantizer."""

from typing import Any, ClassVar

from huggingface_hub.dataclasses import strict, validated_field
from transformers import AutoConfig, PreTrainedConfig

from .presets import PresetMixin
from .schedules import DEFAULT_SCHEDULE, SCHEDULE_KINDS, CodebookSchedule
from .validation import number_validator, optional_number_validator


RECONSTRUCTION_LOSS_TYPES: tuple[str, ...] = ("mse", "l1")
DECODER_TYPES: tuple[str, ...] = ("conv", "linear")


def _positive_int(name: str, default: int) -> Any:
    return validated_field(number_validator(name, minimum=1, integer=True), default=default)


def _number(name: str, default: float, **bounds: Any) -> Any:
    return validated_field(number_validator(name, **bounds), default=default)


def _choice(name: str, choices: tuple[str, ...]):
    def validator(value: Any) -> None:
        if value not in choices:
            raise ValueError(f"{name} = {value!r} is not supported; expected one of {choices}.")

    return validator


@strict
class VCQVQConfig(PresetMixin, PreTrainedConfig):
    r"""Configuration of [`VCQVQModel`], the VCQ image tokenizer.

    The tokenizer is a 1D ViT in the TiTok style: the encoder reads `(image_size / patch_size) ** 2` patch embeddings
    plus `num_image_tokens` learned latent tokens; the latent outputs are projected to `codebook_dim` and quantized by a
    `VariableCodebookQuantizer` in which position t picks among the first `codebook_sizes[t]` entries of one shared
    codebook of `codebook_size` (K_max) entries. The decoder reads one mask token per patch plus the quantized latents
    projected up and turns its N patch outputs into an image: `decoder_type="conv"` (the default) unpatchifies them
    into a `decoder_conv_channels`-channel feature map at full resolution and refines it with `decoder_conv_layers`
    residual 3x3 conv blocks, so every output pixel near a patch border sees both patches and no block edges are
    forced; `"linear"` is the v1 head (one linear map per patch straight to pixels, which leaves patch seams).

    The per-position sizes are stored explicitly in `codebook_sizes` (and so in `config.json`): a checkpoint never
    depends on the schedule formula. When `codebook_sizes` is not given it is derived from `k_min`, `codebook_size`,
    `schedule` and `ramp_length` with `vcq_hf.schedules.codebook_sizes`; when it is given it wins over those fields.

    Args:
        image_size (`int`, *optional*, defaults to 32): side of the square input images, a multiple of `patch_size`.
        num_channels (`int`, *optional*, defaults to 3): channels of the input images.
        patch_size (`int`, *optional*, defaults to 4): side of the square patches.
        num_image_tokens (`int`, *optional*, defaults to 32): number T of image tokens (codes) per image. Configs
            saved before it was renamed store it as `num_tokens`; they load unchanged and `config.num_tokens` still
            reads it.
        encoder_hidden_size (`int`, *optional*, defaults to 192): width of the encoder ViT.
        encoder_num_layers (`int`, *optional*, defaults to 4): depth of the encoder ViT.
        encoder_num_heads (`int`, *optional*, defaults to 4): attention heads of the encoder, divides its width.
        decoder_hidden_size (`int`, *optional*, defaults to 192): width of the decoder ViT.
        decoder_num_layers (`int`, *optional*, defaults to 4): depth of the decoder ViT.
        decoder_num_heads (`int`, *optional*, defaults to 4): attention heads of the decoder, divides its width.
        decoder_type (`str`, *optional*, defaults to `"conv"`): pixel head of the decoder, `"conv"` (unpatchify to a
            feature map + residual conv refinement) or `"linear"` (the v1 per-patch linear head, seams and all).
            A `config.json` saved before this field existed loads as `"linear"`, the head its weights belong to.
        decoder_conv_channels (`int`, *optional*, defaults to 32): channels of the full-resolution feature map of the
            `"conv"` head.
        decoder_conv_layers (`int`, *optional*, defaults to 2): residual blocks (two 3x3 convs each) of the `"conv"`
            head; 0 leaves only the output conv.
        mlp_ratio (`float`, *optional*, defaults to 4.0): MLP width as a multiple of the hidden size.
        layer_norm_eps (`float`, *optional*, defaults to 1e-6): epsilon of the layer norms.
        initializer_range (`float`, *optional*, defaults to 0.02): std of the truncated-normal weight init.
        codebook_size (`int`, *optional*, defaults to 1024): K_max, entries of the shared codebook.
        codebook_dim (`int`, *optional*, defaults to 12): dimension of the codebook entries.
        k_min (`int`, *optional*, defaults to 2): K at the first position of a ramped schedule, in [1, K_max].
        schedule (`str`, *optional*, defaults to `vcq_hf.schedules.DEFAULT_SCHEDULE`): one of `"constant"` (the uniform baseline), `"linear"`,
            `"log"`, `"cosine"`; see `vcq_hf.schedules.codebook_sizes`.
        ramp_length (`int`, *optional*): 1-based position where the schedule reaches K_max; defaults to T.
        codebook_sizes (`list[int]`, *optional*): explicit K_t per position (length `num_image_tokens`, monotone, last entry
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
            num_image_tokens=5,
            encoder_hidden_size=30,
            encoder_num_layers=1,
            encoder_num_heads=3,
            decoder_hidden_size=30,
            decoder_num_layers=1,
            decoder_num_heads=3,
            decoder_conv_channels=6,
            decoder_conv_layers=1,
            mlp_ratio=2.0,
            codebook_size=37,
            codebook_dim=5,
            k_min=3,
            schedule="log",
        ),
        # The demo data (Fashion-MNIST, emoji, digits at 32x32 RGB): ~1.9M parameters. 8x8 patches keep the
        # sequence at 16 patches + 32 latents, 3x cheaper than 4x4 patches. Tokenizer v2: a 32-channel conv pixel
        # head with one residual block and the L1 pixel loss (benchmarks/results/vq.md).
        "small-32px": dict(
            image_size=32,
            patch_size=8,
            num_image_tokens=32,
            encoder_hidden_size=128,
            encoder_num_layers=4,
            encoder_num_heads=4,
            decoder_hidden_size=128,
            decoder_num_layers=4,
            decoder_num_heads=4,
            decoder_type="conv",
            decoder_conv_channels=32,
            decoder_conv_layers=1,
            mlp_ratio=4.0,
            codebook_size=1024,
            codebook_dim=12,
            k_min=2,
            schedule=DEFAULT_SCHEDULE,
            reconstruction_loss_type="l1",
        ),
        # The paper's setting: 256x256 ImageNet, 16x16 patches, 256 tokens, K_max = 16384, 8-dim codes (TiTok-B-like).
        "imagenet-256": dict(
            image_size=256,
            patch_size=16,
            num_image_tokens=256,
            encoder_hidden_size=768,
            encoder_num_layers=12,
            encoder_num_heads=12,
            decoder_hidden_size=768,
            decoder_num_layers=12,
            decoder_num_heads=12,
            decoder_type="conv",
            decoder_conv_channels=32,
            decoder_conv_layers=2,
            mlp_ratio=4.0,
            codebook_size=16384,
            codebook_dim=8,
            k_min=2,
            schedule=DEFAULT_SCHEDULE,
            reconstruction_loss_type="l1",
        ),
    }

    image_size: int = _positive_int("image_size", 32)
    num_channels: int = _positive_int("num_channels", 3)
    patch_size: int = _positive_int("patch_size", 4)
    num_image_tokens: int = _positive_int("num_image_tokens", 32)
    encoder_hidden_size: int = _positive_int("encoder_hidden_size", 192)
    encoder_num_layers: int = _positive_int("encoder_num_layers", 4)
    encoder_num_heads: int = _positive_int("encoder_num_heads", 4)
    decoder_hidden_size: int = _positive_int("decoder_hidden_size", 192)
    decoder_num_layers: int = _positive_int("decoder_num_layers", 4)
    decoder_num_heads: int = _positive_int("decoder_num_heads", 4)
    decoder_type: str = validated_field(_choice("decoder_type", DECODER_TYPES), default="conv")
    decoder_conv_channels: int = _positive_int("decoder_conv_channels", 32)
    decoder_conv_layers: int = validated_field(
        number_validator("decoder_conv_layers", minimum=0, integer=True), default=2
    )
    mlp_ratio: float | int = _number("mlp_ratio", 4.0, minimum=0.0, exclusive_minimum=True)
    layer_norm_eps: float | int = _number("layer_norm_eps", 1e-6, minimum=0.0, exclusive_minimum=True)
    initializer_range: float | int = _number("initializer_range", 0.02, minimum=0.0, exclusive_minimum=True)
    codebook_size: int = _positive_int("codebook_size", 1024)
    codebook_dim: int = _positive_int("codebook_dim", 12)
    k_min: int = _positive_int("k_min", 2)
    schedule: str = validated_field(_choice("schedule", SCHEDULE_KINDS), default=DEFAULT_SCHEDULE)
    ramp_length: int | None = validated_field(
        optional_number_validator("ramp_length", minimum=1, integer=True), default=None
    )
    codebook_sizes: list[int] | tuple[int, ...] | None = None
    use_l2_norm: bool = True
    commitment_weight: float | int = _number("commitment_weight", 0.25, minimum=0.0)
    entropy_weight: float | int = _number("entropy_weight", 0.0, minimum=0.0)
    entropy_temperature: float | int = _number("entropy_temperature", 0.01, minimum=0.0, exclusive_minimum=True)
    usage_decay: float | int = _number("usage_decay", 0.99, minimum=0.0, maximum=1.0, exclusive_maximum=True)
    reconstruction_loss_type: str = validated_field(
        _choice("reconstruction_loss_type", RECONSTRUCTION_LOSS_TYPES), default="mse"
    )
    quantizer_loss_weight: float | int = _number("quantizer_loss_weight", 1.0, minimum=0.0)

    # Configs saved before the token count had one name store `num_tokens`; it reads and writes `num_image_tokens`.
    attribute_map: ClassVar[dict[str, str]] = {"num_tokens": "num_image_tokens"}

    def __post_init__(self, **kwargs):
        if "num_tokens" in kwargs:  # an old config.json (or an old keyword)
            self.num_image_tokens = kwargs.pop("num_tokens")
        ramp_ok = self.ramp_length is None or self.ramp_length <= self.num_image_tokens
        if self.codebook_sizes is None and self.k_min <= self.codebook_size and ramp_ok:
            schedule = CodebookSchedule.from_kind(
                self.num_image_tokens, self.k_min, self.codebook_size, self.schedule, self.ramp_length
            )
            self.codebook_sizes = schedule.to_list()
        elif self.codebook_sizes is not None:
            try:  # validated once here; a bad schedule is reported by the class validator
                self.codebook_sizes = self.codebook_schedule.to_list()  # stored as a JSON list of ints
            except (ValueError, TypeError):
                pass
        super().__post_init__(**kwargs)

    @property
    def codebook_schedule(self) -> CodebookSchedule:
        """The validated, immutable [`~vcq_hf.schedules.CodebookSchedule`] of `codebook_sizes` (shared and cached
        per distinct schedule): what the quantizer, the input checks and the analysis tools consume."""
        return CodebookSchedule.cached(self.codebook_sizes)

    def validate_vcq_vq(self) -> None:
        """Part of `@strict` validation (at construction, after `from_pretrained` overrides, at save): the fields
        agree with each other. Single fields are checked when they are set."""
        image_size, patch_size = self.image_size, self.patch_size
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
        if round(min(self.encoder_hidden_size, self.decoder_hidden_size) * self.mlp_ratio) < 1:
            raise ValueError(f"mlp_ratio = {self.mlp_ratio} is too small: the MLP width rounds to 0.")
        if self.k_min > self.codebook_size:
            raise ValueError(
                f"k_min = {self.k_min} is out of range: it must be in [1, codebook_size = {self.codebook_size}]."
            )
        if self.ramp_length is not None and self.ramp_length > self.num_image_tokens:
            raise ValueError(
                f"ramp_length = {self.ramp_length} is out of range: it must be in [1, num_image_tokens = "
                f"{self.num_image_tokens}]."
            )
        if self.codebook_sizes is None:
            raise ValueError("codebook_sizes is None; build the config again so that it is derived from the schedule.")
        schedule = self.codebook_schedule
        if len(schedule) != self.num_image_tokens:
            raise ValueError(
                f"codebook_sizes has {len(schedule)} entries but num_image_tokens is {self.num_image_tokens}; give "
                "one codebook size per image position."
            )
        if schedule.k_max != self.codebook_size:
            raise ValueError(
                f"codebook_sizes[-1] = {schedule.k_max} must equal codebook_size = {self.codebook_size} (K_max, the "
                "size of the shared codebook); set codebook_size to the largest entry of codebook_sizes."
            )

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> "VCQVQConfig":
        """Build a config from a `config.json` dict; one saved before `decoder_type` existed gets the v1 `"linear"`
        pixel head it was trained with (the `"conv"` default would not match its weights)."""
        if "decoder_type" not in config_dict:
            config_dict = {**config_dict, "decoder_type": "linear"}
        return super().from_dict(config_dict, **kwargs)

    @property
    def num_patches(self) -> int:
        """Number of patches per image, `(image_size // patch_size) ** 2`."""
        return (self.image_size // self.patch_size) ** 2


VCQVQConfig.register_for_auto_class()
AutoConfig.register(VCQVQConfig.model_type, VCQVQConfig, exist_ok=True)


__all__ = ["VCQVQConfig"]
