import random

import pytest
import torch
import torch.nn.functional as F

from vcq_hf.quantizer import VariableCodebookQuantizer, naive_nearest_codes, plan_lookup_groups
from vcq_hf.schedules import SCHEDULE_KINDS, codebook_sizes


def make_quantizer(sizes, dim=4, **kwargs):
    torch.manual_seed(0)
    quantizer = VariableCodebookQuantizer(sizes, codebook_dim=dim, **kwargs)
    torch.nn.init.normal_(quantizer.embedding.weight)
    return quantizer


@pytest.mark.parametrize("use_l2_norm", [True, False])
@pytest.mark.parametrize("kind", SCHEDULE_KINDS)
@pytest.mark.parametrize("num_tokens,k_max", [(7, 37), (32, 1024), (64, 4096)])
def test_grouped_lookup_equals_naive(kind, num_tokens, k_max, use_l2_norm):
    sizes = codebook_sizes(num_tokens, 2, k_max, kind)
    quantizer = make_quantizer(sizes, dim=5, use_l2_norm=use_l2_norm)
    latents = torch.randn(6, num_tokens, 5, generator=torch.Generator().manual_seed(1))
    if use_l2_norm:
        latents = F.normalize(latents, dim=-1)
    codebook = quantizer.get_codebook()
    expected = naive_nearest_codes(latents, codebook, sizes)
    assert torch.equal(quantizer.nearest_codes(latents, codebook), expected)
    assert torch.equal(quantizer(latents).codes, naive_nearest_codes(quantizer(latents).quantized, codebook, sizes))


def test_grouped_lookup_equals_naive_on_random_explicit_schedules():
    rng = random.Random(0)
    for trial in range(60):
        num_tokens = rng.randint(1, 24)
        sizes = sorted(rng.randint(1, 600) for _ in range(num_tokens))
        quantizer = make_quantizer(sizes, dim=3, use_l2_norm=bool(trial % 2))
        latents = torch.randn(3, num_tokens, 3, generator=torch.Generator().manual_seed(trial))
        if quantizer.use_l2_norm:
            latents = F.normalize(latents, dim=-1)
        codebook = quantizer.get_codebook()
        codes = quantizer.nearest_codes(latents, codebook)
        assert torch.equal(codes, naive_nearest_codes(latents, codebook, sizes)), sizes
        assert (codes < torch.tensor(sizes)).all()


def test_lookup_groups_cover_positions_and_save_work():
    sizes = codebook_sizes(256, 2, 16384, "log")
    groups = plan_lookup_groups(sizes)
    assert groups[0].start == 0 and groups[-1].end == 256
    assert all(a.end == b.start for a, b in zip(groups, groups[1:]))
    assert all(g.size == max(sizes[g.start : g.end]) for g in groups)
    work = sum((g.end - g.start) * g.size for g in groups)
    assert work <= 1.15 * sum(sizes) + 256 * 256  # near the ideal sum_t K_t
    assert work < 256 * 16384 / 5
    constant = plan_lookup_groups([64] * 10)
    assert len(constant) == 1 and not constant[0].needs_mask


def test_constant_schedule_is_standard_vq():
    quantizer = make_quantizer([16] * 5, dim=3, use_l2_norm=False)
    latents = torch.randn(4, 5, 3)
    codes = quantizer(latents).codes
    full = torch.cdist(latents.reshape(-1, 3), quantizer.embedding.weight).argmin(-1).view(4, 5)
    assert torch.equal(codes, full)


def test_codes_respect_schedule_and_output_shapes():
    sizes = (1, 2, 2, 5, 9, 9)
    quantizer = make_quantizer(sizes, dim=4)
    assert quantizer(torch.randn(11, 6, 4)).codes_used is None  # usage statistics only when asked
    out = quantizer(torch.randn(11, 6, 4) * 3, output_usage=True)
    assert out.quantized.shape == (11, 6, 4) and out.codes.shape == (11, 6)
    assert out.codes.dtype == torch.int64
    assert (out.codes < torch.tensor(sizes)).all()
    assert (out.codes[:, 0] == 0).all()
    assert out.codes_used.shape == (6,) and out.perplexity.shape == (6,)
    assert out.codes_used[0] == 1 and torch.all(out.codes_used <= torch.tensor(sizes))


def test_usage_statistics_exact():
    quantizer = make_quantizer([4, 4], dim=2)
    codes = torch.tensor([[0, 1], [0, 2], [0, 3], [0, 1]])
    used, perplexity = quantizer.usage_statistics(codes)
    assert used.tolist() == [1, 3]
    assert perplexity[0].item() == pytest.approx(1.0)
    probs = torch.tensor([0.5, 0.25, 0.25])
    assert perplexity[1].item() == pytest.approx(torch.exp(-(probs * probs.log()).sum()).item())


def test_beta_is_on_the_commitment_term():
    """Pin which term gets beta: the encoder gradient is beta * d/dz ||z - sg[e]||^2, the codebook gets weight 1."""
    beta = 0.25
    quantizer = make_quantizer([8, 8, 8], dim=3, use_l2_norm=False, commitment_weight=beta)
    latents = torch.randn(2, 3, 3, requires_grad=True)
    out = quantizer(latents)
    out.loss.backward()
    selected = quantizer.embedding.weight.detach()[out.codes]  # (B, T, D)
    numel = latents.numel()
    expected_latent_grad = beta * 2 * (latents.detach() - selected) / numel
    torch.testing.assert_close(latents.grad, expected_latent_grad)
    expected_codebook_grad = torch.zeros_like(quantizer.embedding.weight)
    expected_codebook_grad.index_add_(0, out.codes.flatten(), (2 * (selected - latents.detach()) / numel).view(-1, 3))
    torch.testing.assert_close(quantizer.embedding.weight.grad, expected_codebook_grad)
    assert out.loss.item() == pytest.approx((out.codebook_loss + beta * out.commitment_loss).item())
    assert out.codebook_loss.item() == pytest.approx(out.commitment_loss.item())


def test_straight_through_gradient():
    quantizer = make_quantizer([4, 8], dim=3, use_l2_norm=False)
    latents = torch.randn(5, 2, 3, requires_grad=True)
    out = quantizer(latents)
    torch.testing.assert_close(out.quantized, quantizer.embedding.weight[out.codes].detach())
    out.quantized.sum().backward()
    torch.testing.assert_close(latents.grad, torch.ones_like(latents))


def test_cosine_mode_normalises():
    quantizer = make_quantizer([4, 8], dim=3, use_l2_norm=True)
    out = quantizer(torch.randn(5, 2, 3) * 10)
    torch.testing.assert_close(out.quantized.norm(dim=-1), torch.ones(5, 2))


def test_fp32_under_autocast():
    quantizer = make_quantizer([4, 8], dim=3)
    latents = torch.randn(2, 2, 3).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = quantizer(latents)
    assert out.quantized.dtype == torch.bfloat16 and out.loss.dtype == torch.float32


def test_entropy_regulariser():
    quantizer = make_quantizer([4, 16, 16], dim=3, entropy_weight=0.1)
    latents = torch.randn(64, 3, 3, requires_grad=True)
    out = quantizer(latents)
    assert out.entropy_loss.item() < 0  # batch entropy exceeds the per-sample entropy for spread inputs
    assert out.loss.item() == pytest.approx(
        (out.codebook_loss + 0.25 * out.commitment_loss + 0.1 * out.entropy_loss).item(), rel=1e-5
    )
    out.loss.backward()
    assert latents.grad.abs().sum() > 0
    # collapsed inputs: every sample identical -> batch entropy = sample entropy -> loss 0
    same = torch.randn(1, 3, 3).expand(64, 3, 3)
    assert quantizer(same).entropy_loss.item() == pytest.approx(0.0, abs=1e-5)
    assert make_quantizer([4, 4, 4], dim=3)(latents).entropy_loss.item() == 0.0


def test_dead_code_restart_respects_schedule():
    sizes = (2, 2, 8, 8)
    quantizer = make_quantizer(sizes, dim=3)
    quantizer.train()
    latents = torch.randn(16, 4, 3)
    latents[:, 2:] = F.normalize(torch.tensor([1.0, 0.0, 0.0]), dim=0)  # positions 2,3 carry one direction
    quantizer.code_usage.zero_()
    quantizer.code_usage[:2] = 1.0
    restarted = quantizer.restart_dead_codes(latents, threshold=0.5, generator=torch.Generator().manual_seed(0))
    assert restarted == 6
    # codes 2..7 may only be used at positions 2, 3, so they must be seeded from there
    torch.testing.assert_close(quantizer.embedding.weight[2:], torch.tensor([[1.0, 0.0, 0.0]]).expand(6, 3))
    assert quantizer.restart_dead_codes(latents, threshold=0.5) == 0
    with pytest.raises(ValueError, match=r"threshold = nan is out of range: it must be a finite number in \[0, inf\)"):
        quantizer.restart_dead_codes(latents, threshold=float("nan"))  # NaN would silently restart nothing


def test_usage_ema_only_in_training():
    quantizer = make_quantizer([4, 4], dim=3)
    quantizer.eval()
    quantizer(torch.randn(4, 2, 3))
    assert quantizer.code_usage.sum() == 0
    quantizer.train()
    quantizer(torch.randn(4, 2, 3))
    assert quantizer.code_usage.sum() > 0


def test_bad_input():
    quantizer = make_quantizer([2, 4, 8], dim=4)
    with pytest.raises(ValueError, match=r"Expected latents of shape \(batch_size, 3, 4\).*got \(2, 5, 4\)"):
        quantizer(torch.randn(2, 5, 4))
    with pytest.raises(ValueError, match=r"got \(2, 3, 5\)"):
        quantizer(torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match=r"got \(3, 4\)"):
        quantizer(torch.randn(3, 4))
    bad = torch.randn(2, 3, 4)
    bad[1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite.*\(1, 2, 0\)"):
        quantizer(bad)
    bad[1, 2, 0] = float("inf")
    with pytest.raises(ValueError, match="non-finite"):
        quantizer(bad)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(codebook_sizes=[4, 2], codebook_dim=3), "monotone"),
        (dict(codebook_sizes=[], codebook_dim=3), "empty"),
        (dict(codebook_sizes=[2, 4], codebook_dim=0), "codebook_dim = 0"),
        (dict(codebook_sizes=[2, 4], codebook_dim=3, commitment_weight=-1), "commitment_weight = -1"),
        (dict(codebook_sizes=[2, 4], codebook_dim=3, entropy_temperature=0), "entropy_temperature = 0"),
        (dict(codebook_sizes=[2, 4], codebook_dim=3, usage_decay=1.0), r"usage_decay = 1.0 .*\[0, 1\)"),
        (
            dict(codebook_sizes=[2, 4], codebook_dim=3, commitment_weight=float("nan")),
            r"commitment_weight = nan .*\[0, inf\)",
        ),
        (dict(codebook_sizes=[2, 4], codebook_dim=3, entropy_temperature=float("inf")), "entropy_temperature = inf"),
    ],
)
def test_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VariableCodebookQuantizer(**kwargs)
