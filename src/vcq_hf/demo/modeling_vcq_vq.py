"""The VCQ image tokenizer: a TiTok-style 1D ViT encoder/decoder around a `VariableCodebookQuantizer`.

Encoder: patch embedding + positional embedding, concatenated with T learned latent tokens, a bidirectional pre-norm
ViT; the T latent outputs are projected to `codebook_dim` and quantized, position t among `codebook[:K_t]`.
Decoder: one learned mask token per patch (+ positional embedding) concatenated with the quantized latents projected
up (+ their positional embedding), a ViT, then a pixel head: by default (`decoder_type="conv"`) the patch outputs are
unpatchified into a full-resolution feature map and refined by residual 3x3 convs (no patch seams, see
`vcq_hf.metrics.seam_ratio`); `"linear"` keeps the v1 head that predicts each patch's pixels independently.

Reference: "An Image is Worth 32 Tokens for Reconstruction and Generation" (TiTok, Yu et al., 2024) for the 1D
tokenizer layout; written from the paper, not ported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput

from .configuration_vcq_vq import VCQVQConfig
from .quantizer import VariableCodebookQuantizer
from .validation import explain_unreadable_weights


@dataclass
class VCQVQEncoderOutput(ModelOutput):
    """Output of [`VCQVQModel.encode`].

    Args:
        codes (`torch.LongTensor` of shape `(batch_size, num_image_tokens)`): the image tokens, `codes[:, t] < K_t`.
        quantized (`torch.FloatTensor` of shape `(batch_size, num_image_tokens, codebook_dim)`):
            quantized latents with straight-through gradients to the encoder.
        latents (`torch.FloatTensor` of shape `(batch_size, num_image_tokens, codebook_dim)`):
            encoder outputs before quantization (what `quantizer.restart_dead_codes` re-seeds dead codes from).
        loss (`torch.FloatTensor` of shape `()`): the quantizer loss, `codebook_loss + commitment_weight *
            commitment_loss + entropy_weight * entropy_loss`.
        codebook_loss (`torch.FloatTensor` of shape `()`): ||sg[z] - e||^2, moves the codebook.
        commitment_loss (`torch.FloatTensor` of shape `()`): ||z - sg[e]||^2, moves the encoder.
        entropy_loss (`torch.FloatTensor` of shape `()`): the entropy regulariser (0 when `entropy_weight` is 0).
        codes_used (`torch.LongTensor` of shape `(num_image_tokens,)`, *optional*): distinct codes per position in
            this batch (only with `output_usage=True`).
        perplexity (`torch.FloatTensor` of shape `(num_image_tokens,)`, *optional*): code perplexity per position in
            this batch (only with `output_usage=True`).
    """

    codes: torch.LongTensor | None = None
    quantized: torch.FloatTensor | None = None
    latents: torch.FloatTensor | None = None
    loss: torch.FloatTensor | None = None
    codebook_loss: torch.FloatTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    entropy_loss: torch.FloatTensor | None = None
    codes_used: torch.LongTensor | None = None
    perplexity: torch.FloatTensor | None = None


@dataclass
class VCQVQDecoderOutput(ModelOutput):
    """Output of [`VCQVQModel.decode`].

    Args:
        sample (`torch.FloatTensor` of shape `(batch_size, num_channels, image_size, image_size)`):
            decoded images in [-1, 1].
    """

    sample: torch.FloatTensor | None = None


@dataclass
class VCQVQModelOutput(ModelOutput):
    """Output of [`VCQVQModel.forward`] (reconstruction).

    Args:
        sample (`torch.FloatTensor` of shape `(batch_size, num_channels, image_size, image_size)`):
            reconstructed images, clamped to [-1, 1] (the losses use the unclamped prediction).
        loss (`torch.FloatTensor` of shape `()`): `reconstruction_loss + quantizer_loss_weight * (codebook_loss +
            commitment_weight * commitment_loss + entropy_weight * entropy_loss)`, the training objective.
        reconstruction_loss (`torch.FloatTensor` of shape `()`): pixel MSE or L1 (`config.reconstruction_loss_type`).
        codebook_loss (`torch.FloatTensor` of shape `()`): see [`VCQVQEncoderOutput`].
        commitment_loss (`torch.FloatTensor` of shape `()`): see [`VCQVQEncoderOutput`].
        entropy_loss (`torch.FloatTensor` of shape `()`): see [`VCQVQEncoderOutput`].
        codes (`torch.LongTensor` of shape `(batch_size, num_image_tokens)`): the image tokens.
        codes_used (`torch.LongTensor` of shape `(num_image_tokens,)`, *optional*): distinct codes per position in
            this batch (only with `output_usage=True`).
        perplexity (`torch.FloatTensor` of shape `(num_image_tokens,)`, *optional*): code perplexity per position in
            this batch (only with `output_usage=True`).
    """

    sample: torch.FloatTensor | None = None
    loss: torch.FloatTensor | None = None
    reconstruction_loss: torch.FloatTensor | None = None
    codebook_loss: torch.FloatTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    entropy_loss: torch.FloatTensor | None = None
    codes: torch.LongTensor | None = None
    codes_used: torch.LongTensor | None = None
    perplexity: torch.FloatTensor | None = None


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain attention in PyTorch ops (`attn_implementation="eager"`); the reference for the other kernels."""
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling  # (B, nh, L, L)
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = F.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = F.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()  # (B, L, nh, hd)
    return attn_output, attn_weights


class VCQVQAttention(nn.Module):
    """Bidirectional multi-head self-attention (no mask) through transformers' attention interface: the kernel is
    `config._attn_implementation` (`"sdpa"` by default, `"eager"`, or any registered one)."""

    def __init__(self, config: VCQVQConfig, hidden_size: int, num_heads: int):
        super().__init__()
        self.config = config
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.out_proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, hidden_states: torch.Tensor, **kwargs) -> torch.Tensor:
        batch_size, length, hidden_size = hidden_states.shape
        qkv = self.qkv(hidden_states).view(batch_size, length, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, nh, L, hd)
        attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attended, _ = attention_interface(self, query, key, value, None, scaling=self.scaling, dropout=0.0, **kwargs)
        return self.out_proj(attended.reshape(batch_size, length, hidden_size))  # attended: (B, L, nh, hd)


class VCQVQMLP(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.fc2 = nn.Linear(intermediate_size, hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(hidden_states)))


class VCQVQLayer(GradientCheckpointingLayer):
    """Pre-norm transformer block: x + attn(LN(x)), then x + MLP(LN(x)). Recomputed in the backward pass when the
    model has `gradient_checkpointing_enable()`d."""

    def __init__(self, config: VCQVQConfig, hidden_size: int, num_heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, eps=config.layer_norm_eps)
        self.attention = VCQVQAttention(config, hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, eps=config.layer_norm_eps)
        self.mlp = VCQVQMLP(hidden_size, round(hidden_size * config.mlp_ratio))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = hidden_states + self.attention(self.norm1(hidden_states))
        return hidden_states + self.mlp(self.norm2(hidden_states))


class VCQVQEncoder(nn.Module):
    """Patches + T learned latent tokens -> ViT -> the T latent outputs projected to `codebook_dim`."""

    def __init__(self, config: VCQVQConfig):
        super().__init__()
        hidden_size = config.encoder_hidden_size
        self.num_image_tokens = config.num_image_tokens
        self.patch_embedding = nn.Conv2d(
            config.num_channels, hidden_size, kernel_size=config.patch_size, stride=config.patch_size
        )
        self.patch_position_embedding = nn.Parameter(torch.empty(1, config.num_patches, hidden_size))
        self.latent_tokens = nn.Parameter(torch.empty(1, config.num_image_tokens, hidden_size))
        self.latent_position_embedding = nn.Parameter(torch.empty(1, config.num_image_tokens, hidden_size))
        self.layers = nn.ModuleList(
            VCQVQLayer(config, hidden_size, config.encoder_num_heads) for _ in range(config.encoder_num_layers)
        )
        self.norm = nn.LayerNorm(hidden_size, eps=config.layer_norm_eps)
        self.proj_out = nn.Linear(hidden_size, config.codebook_dim)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        patches = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)  # (B, N, h)
        patches = patches + self.patch_position_embedding
        latents = (self.latent_tokens + self.latent_position_embedding).expand(patches.shape[0], -1, -1)  # (B, T, h)
        hidden_states = torch.cat([patches, latents], dim=1)  # (B, N + T, h)
        for layer in self.layers:
            hidden_states = layer(hidden_states)
        hidden_states = self.norm(hidden_states[:, -self.num_image_tokens :])  # (B, T, h)
        return self.proj_out(hidden_states)  # (B, T, codebook_dim)


class VCQVQConvBlock(nn.Module):
    """Residual 3x3 conv block at full resolution: x + conv(GELU(conv(GELU(x))))."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states + self.conv2(F.gelu(self.conv1(F.gelu(hidden_states))))


class VCQVQDecoder(nn.Module):
    """N mask tokens + T quantized latents projected up -> ViT -> the N patch outputs -> image.

    `decoder_type="conv"`: each patch output becomes a p x p x c block of a full-resolution feature map (unpatchify),
    refined by residual 3x3 conv blocks and a 3x3 output conv; a pixel within a few pixels of a patch border is a
    function of both patches, so the decoder is not forced to draw block edges. `"linear"`: the patch outputs map
    straight to the pixels of their patch (v1).
    """

    def __init__(self, config: VCQVQConfig):
        super().__init__()
        hidden_size = config.decoder_hidden_size
        self.num_patches = config.num_patches
        self.patch_size = config.patch_size
        self.num_channels = config.num_channels
        self.grid_size = config.image_size // config.patch_size
        self.proj_in = nn.Linear(config.codebook_dim, hidden_size)
        self.latent_position_embedding = nn.Parameter(torch.empty(1, config.num_image_tokens, hidden_size))
        self.mask_token = nn.Parameter(torch.empty(1, 1, hidden_size))
        self.patch_position_embedding = nn.Parameter(torch.empty(1, config.num_patches, hidden_size))
        self.layers = nn.ModuleList(
            VCQVQLayer(config, hidden_size, config.decoder_num_heads) for _ in range(config.decoder_num_layers)
        )
        self.norm = nn.LayerNorm(hidden_size, eps=config.layer_norm_eps)
        use_conv = config.decoder_type == "conv"
        self.map_channels = config.decoder_conv_channels if use_conv else config.num_channels
        self.proj_out = nn.Linear(hidden_size, config.patch_size**2 * self.map_channels)
        if use_conv:
            self.conv_blocks = nn.ModuleList(
                VCQVQConvBlock(self.map_channels) for _ in range(config.decoder_conv_layers)
            )
            self.conv_out = nn.Conv2d(self.map_channels, config.num_channels, kernel_size=3, padding=1)
        else:
            self.conv_blocks, self.conv_out = None, None

    def forward(self, quantized: torch.Tensor) -> torch.Tensor:
        batch_size = quantized.shape[0]
        latents = self.proj_in(quantized) + self.latent_position_embedding  # (B, T, h)
        masks = (self.mask_token + self.patch_position_embedding).expand(batch_size, -1, -1)  # (B, N, h)
        hidden_states = torch.cat([masks, latents], dim=1)  # (B, N + T, h)
        for layer in self.layers:
            hidden_states = layer(hidden_states)
        patches = self.proj_out(self.norm(hidden_states[:, : self.num_patches]))  # (B, N, p*p*c)
        grid, size, channels = self.grid_size, self.patch_size, self.map_channels
        patches = patches.view(batch_size, grid, grid, size, size, channels)  # (B, gh, gw, p, p, c)
        image = patches.permute(0, 5, 1, 3, 2, 4).reshape(batch_size, channels, grid * size, grid * size)
        if self.conv_out is None:
            return image  # (B, C, H, W)
        for block in self.conv_blocks:
            image = block(image)  # (B, c, H, W)
        return self.conv_out(F.gelu(image))  # (B, C, H, W)


class VCQVQPreTrainedModel(PreTrainedModel):
    """Weight initialisation and loading glue shared by the VCQ tokenizer models."""

    config_class = VCQVQConfig
    config: VCQVQConfig
    base_model_prefix = "vcq_vq"
    main_input_name = "pixel_values"
    input_modalities = "image"
    _no_split_modules = ["VCQVQLayer"]
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = True

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """[`~transformers.PreTrainedModel.from_pretrained`]; a truncated or corrupt local weights file raises
        `CorruptWeightsError` naming the file (safetensors' own error does not say which file)."""
        with explain_unreadable_weights(pretrained_model_name_or_path):
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Initialise every weight here (not in `__init__`): `from_pretrained` builds on the meta device."""
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            init.trunc_normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, (VCQVQEncoder, VCQVQDecoder)):
            for name, parameter in module.named_parameters(recurse=False):
                init.trunc_normal_(parameter, mean=0.0, std=std)
        elif isinstance(module, VariableCodebookQuantizer):
            # Same as `module.reset_parameters()`, through `init` so that loaded weights are left untouched.
            bound = 1.0 / module.codebook_size
            init.uniform_(module.embedding.weight, -bound, bound)
            init.zeros_(module.code_usage)


class VCQVQModel(VCQVQPreTrainedModel):
    r"""The VCQ image tokenizer: images (B, C, H, W) in [-1, 1] <-> codes (B, T), `codes[:, t] < codebook_sizes[t]`.

    Args:
        config ([`VCQVQConfig`]): the model configuration.

    Example:

    ```python
    >>> import torch
    >>> from vcq_hf import VCQVQConfig, VCQVQModel
    >>> model = VCQVQModel(VCQVQConfig.from_preset("tiny")).eval()
    >>> codes = model.encode(torch.rand(2, 3, 12, 12) * 2 - 1).codes  # (2, 5), codes[:, t] < K_t
    >>> images = model.decode(codes).sample  # (2, 3, 12, 12) in [-1, 1]

    ```
    """

    def __init__(self, config: VCQVQConfig):
        super().__init__(config)
        self.encoder = VCQVQEncoder(config)
        self.quantizer = VariableCodebookQuantizer(
            config.codebook_schedule,
            codebook_dim=config.codebook_dim,
            use_l2_norm=config.use_l2_norm,
            commitment_weight=config.commitment_weight,
            entropy_weight=config.entropy_weight,
            entropy_temperature=config.entropy_temperature,
            usage_decay=config.usage_decay,
        )
        self.decoder = VCQVQDecoder(config)
        self.post_init()

    def _check_pixel_values(self, pixel_values: torch.Tensor) -> None:
        config = self.config
        expected = (config.num_channels, config.image_size, config.image_size)
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() != 4 or pixel_values.shape[1:] != expected:
            got = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
            raise ValueError(
                f"Expected pixel_values of shape (batch_size, {', '.join(map(str, expected))}) "
                f"(batch, channels, height, width), got {got}; resize with VCQImageProcessor."
            )
        if not pixel_values.is_floating_point():
            raise ValueError(
                f"pixel_values must be a floating point tensor in [-1, 1], got dtype {pixel_values.dtype}."
            )
        if pixel_values.numel() and not torch.compiler.is_compiling():  # a data-dependent check: eager mode only
            low, high = (float(v) for v in torch.aminmax(pixel_values.detach()))
            if not (math.isfinite(low) and math.isfinite(high)):
                raise ValueError(f"pixel_values contain non-finite values (NaN or inf; range [{low}, {high}]).")
            if not (low >= -1.0 - 1e-3 and high <= 1.0 + 1e-3):
                hint = " (images in [0, 255]?)" if high > 2.0 else ""
                raise ValueError(
                    f"pixel_values must lie in [-1, 1], got values in [{low:g}, {high:g}]{hint}; preprocess the "
                    "images with VCQImageProcessor, or map [0, 255] to [-1, 1] with x / 127.5 - 1."
                )

    def _check_codes(self, codes: torch.Tensor) -> None:
        num_image_tokens = self.config.num_image_tokens
        if not isinstance(codes, torch.Tensor):
            raise ValueError(
                f"codes must be a torch.Tensor of shape (batch_size, {num_image_tokens}), got {type(codes)}."
            )
        if codes.dim() != 2 or codes.shape[1] != num_image_tokens:
            raise ValueError(f"Expected codes of shape (batch_size, {num_image_tokens}), got {tuple(codes.shape)}.")
        if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
            raise ValueError(f"codes must have an integer dtype (torch.long), got {codes.dtype}.")
        if not torch.compiler.is_compiling():  # a value check is a data-dependent branch: skipped under compile
            self.quantizer.schedule.check_codes(codes)

    def encode(
        self, pixel_values: torch.Tensor, output_usage: bool = False, return_dict: bool = True
    ) -> VCQVQEncoderOutput | tuple:
        r"""Encode images into codes.

        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, image_size, image_size)`):
                images in [-1, 1], e.g. from [`VCQImageProcessor`].
            output_usage (`bool`, *optional*, defaults to `False`): also return the per-position `codes_used` and
                `perplexity` of the batch (for training logs; costs a histogram over T * K_max bins).
            return_dict (`bool`, *optional*, defaults to `True`): return a [`VCQVQEncoderOutput`] instead of a tuple.

        Returns:
            [`VCQVQEncoderOutput`] or `tuple`: codes `(batch_size, num_image_tokens)` int64 with `codes[:, t] < K_t`,
            quantized and pre-quantization latents, the quantizer loss terms and per-position usage.

        Raises:
            `ValueError`: if `pixel_values` has the wrong shape or dtype.
        """
        self._check_pixel_values(pixel_values)
        latents = self.encoder(pixel_values)  # (B, T, codebook_dim)
        quantizer_output = self.quantizer(latents, output_usage=output_usage)
        output = VCQVQEncoderOutput(
            codes=quantizer_output.codes,
            quantized=quantizer_output.quantized,
            latents=latents,
            loss=quantizer_output.loss,
            codebook_loss=quantizer_output.codebook_loss,
            commitment_loss=quantizer_output.commitment_loss,
            entropy_loss=quantizer_output.entropy_loss,
            codes_used=quantizer_output.codes_used,
            perplexity=quantizer_output.perplexity,
        )
        return output if return_dict else output.to_tuple()

    def decode(self, codes: torch.Tensor, return_dict: bool = True) -> VCQVQDecoderOutput | tuple:
        r"""Decode codes into images.

        Args:
            codes (`torch.LongTensor` of shape `(batch_size, num_image_tokens)`): integer codes with
                `0 <= codes[:, t] < config.codebook_sizes[t]`.
            return_dict (`bool`, *optional*, defaults to `True`): return a [`VCQVQDecoderOutput`] instead of a tuple.

        Returns:
            [`VCQVQDecoderOutput`] or `tuple`: `sample` of shape `(batch_size, num_channels, image_size, image_size)`
            in [-1, 1].

        Raises:
            `ValueError`: on a wrong shape or a non-integer dtype, or for the first code outside [0, K_t) (naming its
            row, position, code and K_t). Nothing is clamped silently.
        """
        self._check_codes(codes)
        quantized = F.embedding(codes.long(), self.quantizer.get_codebook())  # (B, T, codebook_dim), fp32
        quantized = quantized.to(self.decoder.proj_in.weight.dtype)
        sample = self.decoder(quantized).clamp(-1.0, 1.0)
        output = VCQVQDecoderOutput(sample=sample)
        return output if return_dict else output.to_tuple()

    def forward(
        self, pixel_values: torch.Tensor, output_usage: bool = False, return_dict: bool = True
    ) -> VCQVQModelOutput | tuple:
        r"""Reconstruct images and compute the training losses.

        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, image_size, image_size)`):
                images in [-1, 1].
            output_usage (`bool`, *optional*, defaults to `False`): also return the per-position `codes_used` and
                `perplexity` of the batch (for training logs).
            return_dict (`bool`, *optional*, defaults to `True`): return a [`VCQVQModelOutput`] instead of a tuple.

        Returns:
            [`VCQVQModelOutput`] or `tuple`: the reconstruction `sample` (clamped to [-1, 1]), the total `loss` to
            optimise and each of its terms, the codes and per-position usage.

        Example:

        ```python
        >>> import torch
        >>> from vcq_hf import VCQVQConfig, VCQVQModel
        >>> model = VCQVQModel(VCQVQConfig.from_preset("tiny"))
        >>> output = model(torch.rand(4, 3, 12, 12) * 2 - 1)
        >>> output.loss.backward()

        ```
        """
        encoded = self.encode(pixel_values, output_usage=output_usage)
        prediction = self.decoder(encoded.quantized)  # (B, C, H, W), unclamped
        if self.config.reconstruction_loss_type == "l1":
            reconstruction_loss = F.l1_loss(prediction.float(), pixel_values.float())
        else:
            reconstruction_loss = F.mse_loss(prediction.float(), pixel_values.float())
        loss = reconstruction_loss + self.config.quantizer_loss_weight * encoded.loss
        output = VCQVQModelOutput(
            sample=prediction.clamp(-1.0, 1.0),
            loss=loss,
            reconstruction_loss=reconstruction_loss,
            codebook_loss=encoded.codebook_loss,
            commitment_loss=encoded.commitment_loss,
            entropy_loss=encoded.entropy_loss,
            codes=encoded.codes,
            codes_used=encoded.codes_used,
            perplexity=encoded.perplexity,
        )
        return output if return_dict else output.to_tuple()


VCQVQModel.register_for_auto_class("AutoModel")
AutoModel.register(VCQVQConfig, VCQVQModel, exist_ok=True)


__all__ = [
    "VCQVQDecoderOutput",
    "VCQVQEncoderOutput",
    "VCQVQModel",
    "VCQVQModelOutput",
    "VCQVQPreTrainedModel",
]
