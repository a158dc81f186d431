"""The variable-codebook vector quantizer of VCQ.

ONE shared codebook of K_max = max(codebook_sizes) entries; image position t picks its nearest neighbour among the
first K_t entries only. The lookup groups consecutive positions with (nearly) equal K_t and multiplies each group
only against `codebook[:K_group]`, so it costs O(sum_t K_t * D) per image instead of O(T * K_max * D), and returns
exactly the codes of the naive "full distances, mask j >= K_t, argmin" lookup (`naive_nearest_codes`).

Reference: the VQ-VAE losses (van den Oord et al., 2017), l2-normalised lookup as in ViT-VQGAN / LlamaGen / TiTok,
the batch-entropy regulariser of MaskGIT / MAGVIT, and dead-code restarts as in Jukebox / SoundStream.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from .schedules import CodebookSchedule
from .validation import check_number


@dataclass
class QuantizerOutput(ModelOutput):
    """Output of `VariableCodebookQuantizer`.

    Args:
        quantized (`torch.FloatTensor` of shape `(batch_size, num_image_tokens, codebook_dim)`):
            Quantized latents with straight-through gradients to the input (l2-normalised in cosine mode).
        codes (`torch.LongTensor` of shape `(batch_size, num_image_tokens)`): chosen entries, `codes[:, t] < K_t`.
        loss (`torch.FloatTensor` of shape `()`):
            `codebook_loss + commitment_weight * commitment_loss + entropy_weight * entropy_loss`.
        codebook_loss (`torch.FloatTensor` of shape `()`): ||sg[z] - e||^2, moves the codebook (weight 1).
        commitment_loss (`torch.FloatTensor` of shape `()`): ||z - sg[e]||^2, moves the encoder (weight beta).
        entropy_loss (`torch.FloatTensor` of shape `()`):
            mean over positions of (per-sample entropy - batch entropy) / log K_t of the soft assignments; 0 if off.
        codes_used (`torch.LongTensor` of shape `(num_image_tokens,)`, *optional*): distinct codes per position in
            this batch; only with `output_usage=True`.
        perplexity (`torch.FloatTensor` of shape `(num_image_tokens,)`, *optional*): exp(entropy) of the code
            histogram per position; only with `output_usage=True`.
    """

    quantized: torch.FloatTensor | None = None
    codes: torch.LongTensor | None = None
    loss: torch.FloatTensor | None = None
    codebook_loss: torch.FloatTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    entropy_loss: torch.FloatTensor | None = None
    codes_used: torch.LongTensor | None = None
    perplexity: torch.FloatTensor | None = None


@dataclass(frozen=True)
class LookupGroup:
    """Consecutive positions [start, end) searched together against `codebook[:size]`."""

    start: int
    end: int
    size: int  # max K_t in the group
    needs_mask: bool  # True when some position in the group has K_t < size


def plan_lookup_groups(
    codebook_sizes: Sequence[int] | CodebookSchedule, slack: float = 0.125, small_size: int = 256
) -> tuple[LookupGroup, ...]:
    """Split positions into consecutive groups that share one matmul against `codebook[:K_group]`.

    A group starting at K_start grows while the next K_t <= max(small_size, (1 + slack) * K_start): positions with
    small codebooks are cheap and are batched together, larger ones waste at most `slack` of their work. Positions
    whose K_t is below the group's size are masked, so the result stays exact.
    """
    sizes = CodebookSchedule.coerce(codebook_sizes).sizes
    groups, start = [], 0
    while start < len(sizes):
        limit = max(small_size, math.floor((1.0 + slack) * sizes[start]))
        end = start + 1
        while end < len(sizes) and sizes[end] <= limit:
            end += 1
        size = sizes[end - 1]
        groups.append(LookupGroup(start, end, size, needs_mask=sizes[start] != size))
        start = end
    return tuple(groups)


def _pairwise_distances(latents: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Squared distances ||z||^2 - 2 z.e + ||e||^2 between rows of (N, D) latents and (K, D) entries -> (N, K)."""
    return (
        latents.pow(2).sum(dim=-1, keepdim=True)
        - 2.0 * latents @ codebook.t()
        + codebook.pow(2).sum(dim=-1).unsqueeze(0)
    )


def _histogram(values: torch.Tensor, num_bins: int) -> torch.Tensor:
    """Float counts of each value in `[0, num_bins)`, shape `(num_bins,)`; static-shape unlike `torch.bincount`
    (whose output size depends on the data), so it compiles without a graph break."""
    counts = torch.zeros(num_bins, device=values.device)
    return counts.index_add_(0, values, torch.ones_like(values, dtype=counts.dtype))


def naive_nearest_codes(
    latents: torch.Tensor, codebook: torch.Tensor, codebook_sizes: Sequence[int] | CodebookSchedule
) -> torch.Tensor:
    """Reference lookup: full (B, T, K_max) distances, entries j >= K_t masked with +inf, argmin. Costs T * K_max.

    Args:
        latents (`torch.Tensor` of shape `(batch_size, num_image_tokens, dim)`)
        codebook (`torch.Tensor` of shape `(k_max, dim)`)
        codebook_sizes (`Sequence[int]`): K_t per position.

    Returns:
        `torch.LongTensor` of shape `(batch_size, num_image_tokens)`.
    """
    batch_size, num_tokens, dim = latents.shape
    distances = _pairwise_distances(latents.reshape(-1, dim), codebook).view(batch_size, num_tokens, -1)
    masked = CodebookSchedule.coerce(codebook_sizes).outside_mask(codebook.shape[0], latents.device)  # (T, K_max)
    distances = distances.masked_fill(masked[None], float("inf"))
    return distances.argmin(dim=-1)


class VariableCodebookQuantizer(nn.Module):
    """Vector quantizer where position t chooses among the first K_t entries of one shared codebook.

    Args:
        codebook_sizes (`CodebookSchedule` or `Sequence[int]`): K_t for each of the T positions, monotone
            non-decreasing; a `CodebookSchedule` (e.g. `config.codebook_schedule`) is used as is, a list is validated.
        codebook_dim (`int`): dimension D of the codebook entries.
        use_l2_norm (`bool`, *optional*, defaults to `True`):
            l2-normalise latents and entries before lookup (cosine similarity), as in LlamaGen / TiTok.
        commitment_weight (`float`, *optional*, defaults to 0.25): beta, applied to the encoder (commitment) term.
        entropy_weight (`float`, *optional*, defaults to 0.0): weight of the per-position entropy regulariser.
        entropy_temperature (`float`, *optional*, defaults to 0.01): temperature of the soft assignments.
        usage_decay (`float`, *optional*, defaults to 0.99): EMA decay of the per-code usage counts used by
            `restart_dead_codes`.

    Example:
        >>> import torch
        >>> from vcq_hf.quantizer import VariableCodebookQuantizer
        >>> quantizer = VariableCodebookQuantizer([2, 4, 8, 16], codebook_dim=3)
        >>> out = quantizer(torch.randn(5, 4, 3))
        >>> out.codes.shape, bool((out.codes < torch.tensor([2, 4, 8, 16])).all())
        (torch.Size([5, 4]), True)
    """

    def __init__(
        self,
        codebook_sizes: Sequence[int] | CodebookSchedule,
        codebook_dim: int,
        use_l2_norm: bool = True,
        commitment_weight: float = 0.25,
        entropy_weight: float = 0.0,
        entropy_temperature: float = 0.01,
        usage_decay: float = 0.99,
    ):
        super().__init__()
        self.schedule = CodebookSchedule.coerce(codebook_sizes)
        self.codebook_sizes = self.schedule.sizes
        check_number("codebook_dim", codebook_dim, minimum=1, integer=True)
        check_number("commitment_weight", commitment_weight, minimum=0.0)
        check_number("entropy_weight", entropy_weight, minimum=0.0)
        check_number("entropy_temperature", entropy_temperature, minimum=0.0, exclusive_minimum=True)
        check_number("usage_decay", usage_decay, minimum=0.0, maximum=1.0, exclusive_maximum=True)
        self.num_image_tokens = len(self.codebook_sizes)
        self.codebook_size = max(self.codebook_sizes)
        self.codebook_dim = codebook_dim
        self.use_l2_norm = use_l2_norm
        self.commitment_weight = commitment_weight
        self.entropy_weight = entropy_weight
        self.entropy_temperature = entropy_temperature
        self.usage_decay = usage_decay
        self.lookup_groups = plan_lookup_groups(self.schedule)

        self.embedding = nn.Embedding(self.codebook_size, codebook_dim)
        # Persistent, so that models built on the meta device by `from_pretrained` load it instead of leaving garbage.
        self.register_buffer("code_usage", torch.zeros(self.codebook_size), persistent=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise the codebook uniformly in [-1/K_max, 1/K_max] (VQ-VAE) and clear the usage counts."""
        nn.init.uniform_(self.embedding.weight, -1.0 / self.codebook_size, 1.0 / self.codebook_size)
        self.code_usage.zero_()

    def extra_repr(self) -> str:
        return (
            f"num_image_tokens={self.num_image_tokens}, codebook_size={self.codebook_size}, codebook_dim={self.codebook_dim}, "
            f"k_min={self.codebook_sizes[0]}, use_l2_norm={self.use_l2_norm}, groups={len(self.lookup_groups)}"
        )

    def _check_latents(self, latents: torch.Tensor) -> None:
        if latents.dim() != 3 or latents.shape[1] != self.num_image_tokens or latents.shape[2] != self.codebook_dim:
            raise ValueError(
                f"Expected latents of shape (batch_size, {self.num_image_tokens}, {self.codebook_dim}) "
                f"(batch, num_image_tokens, codebook_dim), got {tuple(latents.shape)}."
            )
        if torch.compiler.is_compiling():
            return  # the value check needs a data-dependent branch (a graph break); shapes are checked above
        if not torch.isfinite(latents).all():
            bad = (~torch.isfinite(latents)).nonzero()[0].tolist()
            raise ValueError(
                f"Latents contain non-finite values (NaN or inf), first at index {tuple(bad)}; the encoder diverged "
                "or its input is invalid."
            )

    def get_codebook(self) -> torch.Tensor:
        """The codebook as used for lookup, in fp32: (K_max, D), l2-normalised in cosine mode."""
        weight = self.embedding.weight.float()
        return F.normalize(weight, dim=-1) if self.use_l2_norm else weight

    def nearest_codes(self, latents: torch.Tensor, codebook: torch.Tensor | None = None) -> torch.Tensor:
        """Grouped nearest-neighbour lookup: codes (B, T) with codes[:, t] < K_t. Costs O(sum_t K_t * D) per image."""
        codebook = self.get_codebook() if codebook is None else codebook
        codes = torch.empty(latents.shape[:2], dtype=torch.long, device=latents.device)
        for group in self.lookup_groups:
            distances = self._group_distances(latents, codebook, group)  # (B, n, K_group)
            codes[:, group.start : group.end] = distances.argmin(dim=-1)
        return codes

    def _group_distances(self, latents: torch.Tensor, codebook: torch.Tensor, group: LookupGroup) -> torch.Tensor:
        batch_size, dim = latents.shape[0], latents.shape[-1]
        span = group.end - group.start
        chunk = latents[:, group.start : group.end].reshape(-1, dim)  # (B * n, D)
        distances = _pairwise_distances(chunk, codebook[: group.size]).view(batch_size, span, group.size)
        if group.needs_mask:
            sizes = self.schedule.limits(latents.device)[group.start : group.end]  # (n,), cached
            masked = torch.arange(group.size, device=latents.device)[None, :] >= sizes[:, None]  # (n, K_group)
            distances = distances.masked_fill(masked[None], float("inf"))
        return distances

    def _entropy_loss(self, latents: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """Per-position (mean per-sample entropy - entropy of the batch-mean assignment) / log K_t, averaged over t.

        Minimising it makes each assignment confident and the batch spread over all K_t allowed entries.
        """
        total = latents.new_zeros(())
        for group in self.lookup_groups:
            logits = -self._group_distances(latents, codebook, group) / self.entropy_temperature  # (B, n, K)
            log_probs = torch.log_softmax(logits, dim=-1)
            probs = log_probs.exp()
            sample_entropy = -(probs * log_probs.nan_to_num(neginf=0.0)).sum(-1).mean(0)  # (n,)
            mean_probs = probs.mean(0)  # (n, K)
            batch_entropy = -(mean_probs * torch.log(mean_probs.clamp_min(1e-12))).sum(-1)  # (n,)
            sizes = self.schedule.limits(latents.device)[group.start : group.end]  # (n,), cached
            normaliser = torch.log(sizes.float()).clamp_min(1.0)
            total = total + ((sample_entropy - batch_entropy) / normaliser).sum()
        return total / self.num_image_tokens

    def usage_statistics(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-position number of distinct codes and code perplexity over a batch of codes (B, T)."""
        num_tokens = codes.shape[1]
        offsets = torch.arange(num_tokens, device=codes.device)[None, :] * self.codebook_size
        counts = _histogram((codes + offsets).reshape(-1), num_tokens * self.codebook_size)
        counts = counts.view(num_tokens, self.codebook_size)
        probs = counts / counts.sum(-1, keepdim=True)
        entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1)
        return (counts > 0).sum(-1), entropy.exp()

    def forward(self, latents: torch.Tensor, output_usage: bool = False) -> QuantizerOutput:
        """Quantize latents (B, T, D) in fp32 (autocast is disabled inside) with straight-through gradients.

        Args:
            latents (`torch.Tensor` of shape `(batch_size, num_image_tokens, codebook_dim)`): encoder outputs.
            output_usage (`bool`, *optional*, defaults to `False`): also return the per-position `codes_used` and
                `perplexity` of this batch (a histogram over T * K_max bins; for training logs, not for encoding).

        Returns:
            [`QuantizerOutput`]. In training mode the EMA usage counts of `restart_dead_codes` are updated too.
        """
        self._check_latents(latents)
        input_dtype = latents.dtype
        with torch.autocast(device_type=latents.device.type, enabled=False):
            latents = latents.float()
            if self.use_l2_norm:
                latents = F.normalize(latents, dim=-1)
            codebook = self.get_codebook()
            codes = self.nearest_codes(latents.detach(), codebook.detach())
            quantized = F.embedding(codes, codebook)  # (B, T, D)

            codebook_loss = F.mse_loss(quantized, latents.detach())
            commitment_loss = F.mse_loss(latents, quantized.detach())
            entropy_loss = self._entropy_loss(latents, codebook) if self.entropy_weight > 0 else latents.new_zeros(())
            loss = codebook_loss + self.commitment_weight * commitment_loss + self.entropy_weight * entropy_loss
            quantized = latents + (quantized - latents).detach()  # straight-through estimator

        codes_used = perplexity = None
        with torch.no_grad():
            if output_usage:
                codes_used, perplexity = self.usage_statistics(codes)
            if self.training:
                batch_counts = _histogram(codes.reshape(-1), self.codebook_size)
                self.code_usage.mul_(self.usage_decay).add_(batch_counts, alpha=1.0 - self.usage_decay)

        return QuantizerOutput(
            quantized=quantized.to(input_dtype),
            codes=codes,
            loss=loss,
            codebook_loss=codebook_loss,
            commitment_loss=commitment_loss,
            entropy_loss=entropy_loss,
            codes_used=codes_used,
            perplexity=perplexity,
        )

    @torch.no_grad()
    def restart_dead_codes(
        self, latents: torch.Tensor, threshold: float = 1e-3, generator: torch.Generator | None = None
    ) -> int:
        """Re-seed codes whose EMA usage is below `threshold` from encoder outputs (B, T, D).

        Code j is re-seeded only from positions allowed to use it (K_t > j); otherwise a restarted high-index code
        would be drawn from early positions that can never select it. Returns the number of restarted codes.
        """
        self._check_latents(latents)
        check_number("threshold", threshold, minimum=0.0)
        latents = latents.float()
        if self.use_l2_norm:
            latents = F.normalize(latents, dim=-1)
        dead = (self.code_usage < threshold).nonzero().flatten().tolist()
        if not dead:
            return 0
        sizes = self.codebook_sizes
        for code in dead:
            first_position = next(t for t, size in enumerate(sizes) if size > code)  # K_t > code
            eligible = latents[:, first_position:].reshape(-1, self.codebook_dim)
            index = torch.randint(eligible.shape[0], (1,), generator=generator, device="cpu").item()
            self.embedding.weight[code] = eligible[index].to(self.embedding.weight.dtype)
        # Give restarted codes the mean usage so they are not restarted again before they had a chance.
        self.code_usage[dead] = self.code_usage.sum() / self.codebook_size + threshold
        return len(dead)


__all__ = ["LookupGroup", "QuantizerOutput", "VariableCodebookQuantizer", "naive_nearest_codes", "plan_lookup_groups"]
