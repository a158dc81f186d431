import math
import random

import pytest

from vcq_hf.schedules import (
    SCHEDULE_KINDS,
    capacity_bits,
    cliff_position,
    codebook_sizes,
    cumulative_capacity_bits,
    format_schedule_report,
    main,
    schedule_report,
    validate_codebook_sizes,
)


IMAGENET_N = 1_281_167


@pytest.mark.parametrize("kind", SCHEDULE_KINDS)
@pytest.mark.parametrize(
    "num_tokens,k_min,k_max", [(1, 2, 16), (7, 2, 300), (32, 2, 1024), (256, 2, 16384), (5, 7, 7)]
)
def test_schedule_shape_monotone_and_endpoints(kind, num_tokens, k_min, k_max):
    sizes = codebook_sizes(num_tokens, k_min, k_max, kind)
    assert isinstance(sizes, tuple) and len(sizes) == num_tokens
    assert all(isinstance(size, int) for size in sizes)
    assert all(a <= b for a, b in zip(sizes, sizes[1:]))
    assert sizes[-1] == k_max
    assert min(sizes) >= (k_max if kind == "constant" else k_min)
    if kind != "constant" and num_tokens > 1:
        assert sizes[0] == k_min


def test_known_values():
    assert codebook_sizes(8, 2, 256, "log") == (2, 4, 8, 16, 32, 64, 128, 256)
    assert codebook_sizes(5, 2, 10, "linear") == (2, 4, 6, 8, 10)
    assert codebook_sizes(3, 2, 10, "cosine") == (2, 6, 10)
    assert codebook_sizes(4, 2, 8, "constant") == (8, 8, 8, 8)


@pytest.mark.parametrize("kind", ["linear", "log", "cosine"])
def test_ramp_length(kind):
    sizes = codebook_sizes(10, 2, 64, kind, ramp_length=4)
    assert sizes[0] == 2 and sizes[3] == 64 and sizes[2] < 64
    assert sizes[3:] == (64,) * 7
    assert codebook_sizes(10, 2, 64, kind, ramp_length=1) == (64,) * 10


def test_log_is_linear_in_log2():
    sizes = codebook_sizes(13, 4, 4096, "log")
    logs = [math.log2(size) for size in sizes]
    steps = [b - a for a, b in zip(logs, logs[1:])]
    assert max(steps) - min(steps) < 0.2


def test_explicit_schedule_validated():
    assert codebook_sizes(3, 2, 8, [2, 4, 8]) == (2, 4, 8)
    assert codebook_sizes(3, 1, 8, (2, 2, 5)) == (2, 2, 5)
    with pytest.raises(ValueError, match="monotone"):
        codebook_sizes(3, 2, 8, [2, 8, 4])
    with pytest.raises(ValueError, match="3 entries but num_image_tokens is 4"):
        codebook_sizes(4, 2, 8, [2, 4, 8])
    with pytest.raises(ValueError, match=r"above k_max = 8"):
        codebook_sizes(3, 2, 8, [2, 4, 16])
    with pytest.raises(ValueError, match=r"below k_min = 2"):
        codebook_sizes(3, 2, 8, [1, 4, 8])
    with pytest.raises(ValueError, match="not an integer"):
        codebook_sizes(3, 2, 8, [2, 4.5, 8])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(num_image_tokens=4, k_min=0, k_max=8), r"k_min = 0 is out of range.*\[1, k_max = 8\]"),
        (dict(num_image_tokens=4, k_min=9, k_max=8), r"k_min = 9 is out of range.*\[1, k_max = 8\]"),
        (dict(num_image_tokens=0, k_min=2, k_max=8), r"num_image_tokens = 0"),
        (dict(num_image_tokens=4, k_min=2, k_max=0), r"k_max = 0"),
        (dict(num_image_tokens=4, k_min=2, k_max=8, ramp_length=0), r"ramp_length = 0 .*\[1, num_image_tokens = 4\]"),
        (dict(num_image_tokens=4, k_min=2, k_max=8, ramp_length=5), r"ramp_length = 5 .*\[1, num_image_tokens = 4\]"),
        (dict(num_image_tokens=4, k_min=2, k_max=8, kind="exponential"), r"Unknown schedule kind 'exponential'"),
    ],
)
def test_invalid_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        codebook_sizes(**kwargs)


def test_validate_codebook_sizes_errors():
    with pytest.raises(ValueError, match="must not be empty"):
        validate_codebook_sizes([])
    with pytest.raises(ValueError, match=r"codebook_sizes\[1\] = 0"):
        validate_codebook_sizes([1, 0])
    assert validate_codebook_sizes(range(1, 4)) == (1, 2, 3)


def test_imagenet_cliff_is_two():
    assert cliff_position(IMAGENET_N, codebook_sizes(256, 2, 16384, "constant")) == 2
    assert math.ceil(math.log2(IMAGENET_N) / math.log2(16384)) == 2


@pytest.mark.parametrize("num_samples", [1, 2, 3, 1000, 60_000, IMAGENET_N, 2**28])
@pytest.mark.parametrize("k", [2, 3, 256, 1024, 16384])
def test_constant_cliff_matches_closed_form(num_samples, k):
    expected = max(1, math.ceil(math.log2(num_samples) / math.log2(k) - 1e-12))
    got = cliff_position(num_samples, [k] * 64)
    assert got == (expected if expected <= 64 else None)


def test_cliff_exact_power_of_two_boundary():
    # 2 tokens of 2^14 hold exactly 28 bits = log2(2^28): the cliff is at 2, not 3.
    assert cliff_position(2**28, [2**14] * 4) == 2
    assert cliff_position(2**28 + 1, [2**14] * 4) == 3


def test_cliff_matches_cumulative_sum_on_random_schedules():
    rng = random.Random(0)
    for _ in range(200):
        sizes = sorted(rng.randint(1, 5000) for _ in range(rng.randint(1, 40)))
        num_samples = rng.randint(1, 10**7)
        cumulative = cumulative_capacity_bits(sizes)
        expected = next((t + 1 for t, bits in enumerate(cumulative) if bits >= math.log2(num_samples) - 1e-9), None)
        assert cliff_position(num_samples, sizes) == expected


def test_vcq_moves_cliff_later():
    uniform = cliff_position(IMAGENET_N, codebook_sizes(256, 2, 16384, "constant"))
    for kind in ["linear", "log", "cosine"]:
        assert cliff_position(IMAGENET_N, codebook_sizes(256, 2, 16384, kind)) > uniform


def test_cliff_invalid_input():
    with pytest.raises(ValueError, match="num_samples = 0"):
        cliff_position(0, [4, 4])
    with pytest.raises(ValueError, match="monotone"):
        cliff_position(10, [4, 2])
    assert cliff_position(10**9, [2, 2]) is None


def test_capacity_bits():
    assert capacity_bits([2, 4, 8]) == pytest.approx(6.0)
    assert capacity_bits([16384] * 256) == pytest.approx(3584.0)


def test_report_table_and_cli(capsys):
    rows = schedule_report(60_000, 32, 1024)
    assert [row.kind for row in rows] == list(SCHEDULE_KINDS)
    assert rows[0].cliff_position == 2 and rows[0].lookup_cost_ratio == pytest.approx(1.0)
    table = format_schedule_report(rows, 60_000, 32)
    assert "| constant |" in table and "2 / 32" in table
    main(["--num-samples", "1281167", "--num-tokens", "256", "--k-max", "16384"])
    out = capsys.readouterr().out
    assert "| constant | 16384" in out and "2 / 256" in out
    with pytest.raises(SystemExit):
        main(["--k-min", "0"])


# ------------------------------------------------------------------------------------------------ CodebookSchedule
def test_codebook_schedule_is_one_immutable_validated_value():
    import pickle

    import torch

    from vcq_hf.schedules import CodebookSchedule

    schedule = CodebookSchedule.cached([2, 4, 8, 8])
    assert schedule is CodebookSchedule.cached((2, 4, 8, 8)) is CodebookSchedule.coerce(schedule)
    assert schedule == [2, 4, 8, 8] and schedule == (2, 4, 8, 8) and list(schedule) == [2, 4, 8, 8]
    assert (schedule.num_image_tokens, schedule.k_min, schedule.k_max, schedule[1], len(schedule)) == (4, 2, 8, 4, 4)
    assert pickle.loads(pickle.dumps(schedule)) == schedule
    with pytest.raises(AttributeError, match="immutable"):
        schedule.sizes = (1,)
    with pytest.raises(ValueError, match="monotone"):
        CodebookSchedule.cached([4, 2])
    # cached tensors: built once per device, the same object on every call
    assert schedule.limits() is schedule.limits("cpu") and schedule.limits().tolist() == [2, 4, 8, 8]
    mask = schedule.outside_mask(10)
    assert mask is schedule.outside_mask(10) and mask.shape == (4, 10)
    assert mask[1].tolist() == [False] * 4 + [True] * 6
    # the cliff arithmetic as methods
    assert schedule.cliff_position(16) == cliff_position(16, [2, 4, 8, 8]) == 3
    assert schedule.capacity_bits() == capacity_bits([2, 4, 8, 8]) == 9.0
    assert schedule.lookup_cost_ratio() == 4 * 8 / 22
    # code checks name the first bad entry, its position and range
    schedule.check_codes(torch.tensor([[1, 3, 7, 0]]))
    with pytest.raises(
        ValueError, match=r"codes\[0, 2\] = 8 is not a valid image code at image position 2: .*\[0, 8\)"
    ):
        schedule.check_codes(torch.tensor([[1, 3, 8, 0]]))
    with pytest.raises(ValueError, match=r"ids\[0, 2\] = 9 .* image position 2: allowed range \[0, K_2\) = \[0, 8\)"):
        schedule.check_codes(torch.tensor([[3, 9]]), first_position=1, name="ids", column_offset=1)
    schedule.check_codes(torch.tensor([[-100, 3]]), ignore_index=-100)
    # one place compares two components' schedules
    schedule.require_equal([2, 4, 8, 8], "a", "b")
    with pytest.raises(
        ValueError, match=r"a = \[2, 4, 8, 8\] \(T = 4\) but b = \[2, 4, 8\] \(T = 3\).*equal\. Fix it"
    ):
        schedule.require_equal([2, 4, 8], "a", "b", hint="Fix it.")


def test_every_default_schedule_has_one_owner():
    """`DEFAULT_SCHEDULE` decides the schedule of the defaults and of the non-test presets of both configs."""
    from vcq_hf import VCQConfig, VCQVQConfig
    from vcq_hf.schedules import DEFAULT_SCHEDULE, SCHEDULE_KINDS, CodebookSchedule

    assert DEFAULT_SCHEDULE in SCHEDULE_KINDS and DEFAULT_SCHEDULE != "constant"  # VCQ, not the uniform baseline
    assert codebook_sizes(32, 2, 1024) == codebook_sizes(32, 2, 1024, DEFAULT_SCHEDULE)
    assert CodebookSchedule.from_kind(32, 2, 1024).sizes == codebook_sizes(32, 2, 1024, DEFAULT_SCHEDULE)
    assert VCQVQConfig().schedule == DEFAULT_SCHEDULE
    for preset, (tokens, k_max) in {"small-32px": (32, 1024), "imagenet-256": (256, 16384)}.items():
        config = VCQVQConfig.from_preset(preset)
        assert config.schedule == DEFAULT_SCHEDULE
        assert tuple(config.codebook_sizes) == codebook_sizes(tokens, 2, k_max, DEFAULT_SCHEDULE)
    for preset, vq_preset in {"small": "small-32px", "vcq-b": "imagenet-256", "vcq-684m": "imagenet-256"}.items():
        assert list(VCQConfig.from_preset(preset).codebook_sizes) == list(
            VCQVQConfig.from_preset(vq_preset).codebook_sizes
        )
