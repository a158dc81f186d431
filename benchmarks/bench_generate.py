"""Throughput of `VCQForCausalLM.generate`: tokens/s with and without `VCQMask`, and with transformers' CFG.

Two models, each with T = 256 image tokens and a log schedule, batch 8, sampling all 256 tokens:

- `small`: the demo preset (hidden 256, 4 layers, K_max = 1024, 10 classes) with `num_image_tokens=256`,
- `38m`: hidden 512, 6 layers, 8 heads, K_max = 16384, 1000 classes (an ImageNet-sized vocabulary of 17,385).

Variants: `no mask` (the stock `LlamaForCausalLM._get_logits_processor`, i.e. without the model's hook), `VCQMask`
(the default), `CFG s=4 + VCQMask` (transformers'
`guidance_scale`, null class as unconditional prompt; it runs a second, unbatched forward per step). Runs are
interleaved (ABBA order) and the median and the minimum of `--repeats` are reported, since the machine is shared;
"paired" is the median over rounds of the per-round ratio to `no mask`, the steadiest overhead estimate under load. The mask's own cost per call is
also timed in isolation.

Run: `OMP_NUM_THREADS=1 python benchmarks/bench_generate.py [--repeats 3] [--batch-size 8] [--models small 38m]`
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from unittest import mock


os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from transformers import LlamaForCausalLM  # noqa: E402

from vcq_hf import VCQConfig, VCQForCausalLM, VCQMask  # noqa: E402
from vcq_hf.schedules import codebook_sizes  # noqa: E402


NUM_TOKENS = 256


def build_model(name: str) -> VCQForCausalLM:
    if name == "small":
        config = VCQConfig.from_preset(
            "small",
            num_image_tokens=NUM_TOKENS,
            codebook_sizes=list(codebook_sizes(NUM_TOKENS, 2, 1024, "log", ramp_length=64)),
        )
    elif name == "38m":
        config = VCQConfig(
            hidden_size=512,
            intermediate_size=1536,
            num_hidden_layers=6,
            num_attention_heads=8,
            codebook_size=16384,
            codebook_sizes=list(codebook_sizes(NUM_TOKENS, 2, 16384, "log", ramp_length=64)),
            num_image_tokens=NUM_TOKENS,
            num_classes=1000,
        )
    else:
        raise ValueError(f"Unknown benchmark model {name!r}; choose 'small' or '38m'.")
    torch.manual_seed(0)
    return VCQForCausalLM(config).eval()


VARIANTS = {
    "no mask": {"_raw_model": True},
    "VCQMask": {},
    "CFG s=4 + VCQMask": {"guidance_scale": 4.0},
}


def time_generate(model: VCQForCausalLM, prompt: torch.Tensor, kwargs: dict) -> float:
    kwargs = dict(kwargs)
    raw_model = kwargs.pop("_raw_model", False)
    torch.manual_seed(0)
    start = time.perf_counter()
    if raw_model:  # generate without VCQForCausalLM's processor hook (no mask)
        with mock.patch.object(type(model), "_get_logits_processor", LlamaForCausalLM._get_logits_processor):
            out = model.generate(prompt, do_sample=True, **kwargs)
    else:
        out = model.generate(prompt, do_sample=True, **kwargs)
    elapsed = time.perf_counter() - start
    expected_length = 1 + kwargs.get("max_new_tokens", NUM_TOKENS)
    if out.shape != (prompt.shape[0], expected_length):
        raise RuntimeError(
            f"generate returned shape {tuple(out.shape)}, expected ({prompt.shape[0]}, {expected_length})"
        )
    return elapsed


def time_mask_call(model: VCQForCausalLM, batch_size: int, calls: int = 2000) -> float:
    """Seconds per VCQMask call on (batch_size, vocab_size) scores, averaged over all positions."""
    mask = VCQMask(model.config.codebook_sizes, prompt_length=1)
    scores = torch.randn(batch_size, model.config.vocab_size)
    ids = [torch.zeros(batch_size, 1 + t, dtype=torch.long) for t in range(NUM_TOKENS)]
    start = time.perf_counter()
    for index in range(calls):
        mask(ids[index % NUM_TOKENS], scores)
    return (time.perf_counter() - start) / calls


def paired_ratio(times: list[float], base_times: list[float]) -> float:
    """Median over rounds of time / no-mask time of the same round (robust to load that drifts between rounds)."""
    return statistics.median(t / b for t, b in zip(times, base_times))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["small", "38m"], choices=["small", "38m"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch_size}, T = {NUM_TOKENS}")
    rows = []
    for name in args.models:
        model = build_model(name)
        params = model.num_parameters()
        prompt = model.build_input_ids(torch.arange(args.batch_size) % model.config.num_classes)
        time_generate(model, prompt, {"max_new_tokens": 8})  # warm-up
        times = {variant: [] for variant in VARIANTS}
        order = list(VARIANTS)
        for repeat in range(args.repeats):  # interleaved, order reversed every other round (ABBA): fair under load
            for variant in order if repeat % 2 == 0 else order[::-1]:
                times[variant].append(time_generate(model, prompt, VARIANTS[variant]))
        mask_seconds = time_mask_call(model, args.batch_size)
        base, base_min = statistics.median(times["no mask"]), min(times["no mask"])
        for variant in VARIANTS:
            median, fastest = statistics.median(times[variant]), min(times[variant])
            rows.append(
                (
                    name,
                    f"{params / 1e6:.1f}M",
                    variant,
                    f"{median:.2f} / {fastest:.2f}",
                    f"{args.batch_size * NUM_TOKENS / median:,.0f} / {args.batch_size * NUM_TOKENS / fastest:,.0f}",
                    f"{100 * (median / base - 1):+.1f}% / {100 * (fastest / base_min - 1):+.1f}% / "
                    f"{100 * (paired_ratio(times[variant], times['no mask']) - 1):+.1f}%",
                )
            )
        step = base / NUM_TOKENS
        rows.append(
            (
                name,
                f"{params / 1e6:.1f}M",
                "VCQMask call alone",
                f"{mask_seconds * NUM_TOKENS:.3f}",
                f"{1e6 * mask_seconds:.0f} us/call",
                f"{100 * mask_seconds / step:+.2f}% of a step",
            )
        )

    header = (
        "model",
        "params",
        "variant",
        "s / batch (median / min)",
        "tokens/s (median / min)",
        "vs no mask (median / min / paired)",
    )
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join("---" for _ in header) + " |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
