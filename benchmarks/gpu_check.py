"""One-command accelerator check: sampling and training throughput of the real model sizes, bf16 and fp32.

On CUDA (about 8 minutes or less on one modern GPU), with random weights:

- `VCQPipeline` images/s for the `vcq-b` prior with the `imagenet-256` tokenizer, batch 64, guidance 4, decoding
  included (`output_type="pt"`), in fp32 and bf16, eager and `compile=True` (the first compiled call is timed
  separately: it holds the compilation);
- that bf16 sampling keeps every code inside its codebook, `codes[:, t] < K_t`;
- one training step (forward, backward, AdamW) of the `vcq-b` prior on full 1 + T sequences (tokens/s) and of the
  `imagenet-256` tokenizer on 256x256 images (images/s), fp32 and bf16 autocast, with peak memory.

`--tiny` runs the same code path with the tiny presets on the CPU in seconds (the test suite runs it, so the script
cannot rot); it compiles in fp32 only. Results go to `--output` as Markdown and JSON beside it.

    python benchmarks/gpu_check.py --output benchmarks/results/gpu_check.md     # on a GPU machine
    python benchmarks/gpu_check.py --tiny --output /tmp/gpu_check.md              # anywhere
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="Tiny presets on the CPU (the CI smoke run).")
    parser.add_argument("--device", default=None, help="Default: cuda if available (cpu with --tiny).")
    parser.add_argument("--batch-size", type=int, default=None, help="Sampling batch (default 64; 2 with --tiny).")
    parser.add_argument("--guidance-scale", type=float, default=4.0)
    parser.add_argument("--train-batch-size", type=int, default=None, help="Prior sequences per step (default 64).")
    parser.add_argument("--tokenizer-batch-size", type=int, default=None, help="Images per step (default 16).")
    parser.add_argument("--no-compile", action="store_true", help="Skip the compiled sampling runs.")
    parser.add_argument("--output", default="benchmarks/results/gpu_check.md")
    args = parser.parse_args(argv)
    for name in ("batch_size", "train_batch_size", "tokenizer_batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} = {value} must be >= 1.")
    return args


class Clock:
    """Wall time of a block, synchronising the device before and after so queued kernels count."""

    def __init__(self, device):
        self.device = device

    def sync(self):
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __call__(self, fn):
        self.sync()
        start = time.perf_counter()
        result = fn()
        self.sync()
        return time.perf_counter() - start, result


def reset_peak(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_mb(device) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def check_sampling(args, device, clock, dtype_name: str, compile: bool) -> dict:
    import torch

    from vcq_hf import VCQConfig, VCQForCausalLM, VCQVQConfig, VCQVQModel
    from vcq_hf.pipeline_vcq import VCQPipeline

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    torch.manual_seed(0)
    vq_config = VCQVQConfig.from_preset("tiny" if args.tiny else "imagenet-256")
    ar_config = VCQConfig.from_vq_config(vq_config, preset="tiny" if args.tiny else "vcq-b")
    pipe = VCQPipeline(VCQVQModel(vq_config).eval(), VCQForCausalLM(ar_config).eval()).to(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    labels = [i % ar_config.num_classes for i in range(args.batch_size)]

    def run():
        out = pipe(
            class_labels=labels,
            guidance_scale=args.guidance_scale,
            generator=torch.Generator(device="cpu").manual_seed(0),
            output_type="pt",
            compile=compile,
        )
        return out

    reset_peak(device)
    first, _ = clock(run)
    warm, out = clock(run)
    limits = torch.tensor(list(ar_config.codebook_sizes), device=out.codes.device)
    codes_ok = bool(((out.codes >= 0) & (out.codes < limits)).all())
    finite = bool(torch.isfinite(out.images).all())
    result = {
        "dtype": dtype_name,
        "compiled": compile,
        "batch": args.batch_size,
        "first_call_s": first,
        "warm_s": warm,
        "images_per_s": args.batch_size / warm,
        "codes_within_K_t": codes_ok,
        "images_finite": finite,
        "peak_mb": peak_mb(device),
    }
    if not codes_ok or not finite:
        raise RuntimeError(f"sampling check failed: {result}")
    return result


def check_prior_training(args, device, clock, dtype_name: str) -> dict:
    import torch

    from vcq_hf import VCQConfig, VCQForCausalLM

    torch.manual_seed(0)
    config = VCQConfig.from_preset("tiny" if args.tiny else "vcq-b")
    model = VCQForCausalLM(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    limits = torch.tensor(list(config.codebook_sizes), device=device)
    codes = (torch.rand(args.train_batch_size, config.num_image_tokens, device=device) * limits).long()
    ids = model.build_input_ids([i % config.num_classes for i in range(args.train_batch_size)], codes)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype_name == "bf16")

    def step():
        with autocast:
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    clock(step)  # warm-up (allocations, kernels)
    reset_peak(device)
    seconds, loss = clock(step)
    if not bool(torch.isfinite(loss)):
        raise RuntimeError(f"prior training step ({dtype_name}) gave a non-finite loss {loss.item()}")
    tokens = args.train_batch_size * config.num_image_tokens
    return {
        "dtype": dtype_name,
        "batch": args.train_batch_size,
        "step_s": seconds,
        "tokens_per_s": tokens / seconds,
        "loss": float(loss),
        "peak_mb": peak_mb(device),
    }


def check_tokenizer_training(args, device, clock, dtype_name: str) -> dict:
    import torch

    from vcq_hf import VCQVQConfig, VCQVQModel

    torch.manual_seed(0)
    config = VCQVQConfig.from_preset("tiny" if args.tiny else "imagenet-256")
    model = VCQVQModel(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    size = config.image_size
    pixels = torch.rand(args.tokenizer_batch_size, 3, size, size, device=device) * 2 - 1
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype_name == "bf16")

    def step():
        with autocast:
            loss = model(pixels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    clock(step)
    reset_peak(device)
    seconds, loss = clock(step)
    if not bool(torch.isfinite(loss)):
        raise RuntimeError(f"tokenizer training step ({dtype_name}) gave a non-finite loss {loss.item()}")
    return {
        "dtype": dtype_name,
        "batch": args.tokenizer_batch_size,
        "image_size": size,
        "step_s": seconds,
        "images_per_s": args.tokenizer_batch_size / seconds,
        "loss": float(loss),
        "peak_mb": peak_mb(device),
    }


def write_report(results: dict, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(results, indent=1))

    def mb(value):
        return "-" if value is None else f"{value:.0f} MB"

    lines = [
        f"# GPU check ({'tiny presets, ' if results['tiny'] else ''}{results['device']})",
        "",
        f"Written by `benchmarks/gpu_check.py`; torch {results['torch']}, {results['machine']}. Random weights.",
        "",
        f"## Sampling: VCQPipeline, guidance {results['guidance_scale']:g}, decoding included",
        "",
        "| dtype | compiled | batch | first call | warm call | images/s | codes within K_t | peak memory |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results["sampling"]:
        lines.append(
            f"| {r['dtype']} | {r['compiled']} | {r['batch']} | {r['first_call_s']:.2f} s | {r['warm_s']:.2f} s | "
            f"{r['images_per_s']:.2f} | {r['codes_within_K_t']} | {mb(r['peak_mb'])} |"
        )
    lines += ["", "## Training steps (forward + backward + AdamW)", ""]
    lines += [
        "| model | dtype | batch | step | throughput | loss | peak memory |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results["prior_training"]:
        lines.append(
            f"| prior | {r['dtype']} | {r['batch']} | {r['step_s']:.3f} s | {r['tokens_per_s']:.0f} tokens/s | "
            f"{r['loss']:.3f} | {mb(r['peak_mb'])} |"
        )
    for r in results["tokenizer_training"]:
        lines.append(
            f"| tokenizer {r['image_size']}px | {r['dtype']} | {r['batch']} | {r['step_s']:.3f} s | "
            f"{r['images_per_s']:.1f} images/s | {r['loss']:.3f} | {mb(r['peak_mb'])} |"
        )
    lines += ["", f"Total wall time: {results['wall_s']:.0f} s."]
    output.write_text("\n".join(lines) + "\n")


def main(args: argparse.Namespace) -> dict:
    import torch

    start = time.perf_counter()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.tiny else "cpu"))
    if not args.tiny and device.type != "cuda":
        raise SystemExit("gpu_check.py needs a CUDA device (or --tiny for the CPU smoke run).")
    args.batch_size = args.batch_size or (2 if args.tiny else 64)
    args.train_batch_size = args.train_batch_size or (2 if args.tiny else 64)
    args.tokenizer_batch_size = args.tokenizer_batch_size or (2 if args.tiny else 16)
    clock = Clock(device)
    output = Path(args.output)
    results = {
        "tiny": args.tiny,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "machine": platform.platform(),
        "guidance_scale": args.guidance_scale,
        "sampling": [],
        "prior_training": [],
        "tokenizer_training": [],
        "wall_s": 0.0,
    }
    plan = [("fp32", False), ("bf16", False)]
    if not args.no_compile:
        plan += [("fp32", True)] if args.tiny else [("fp32", True), ("bf16", True)]
    for dtype_name, compile in plan:
        print(f"sampling {dtype_name} compile={compile}", flush=True)
        results["sampling"].append(check_sampling(args, device, clock, dtype_name, compile))
        results["wall_s"] = time.perf_counter() - start
        write_report(results, output)
    for dtype_name in ("fp32", "bf16"):
        print(f"prior training step {dtype_name}", flush=True)
        results["prior_training"].append(check_prior_training(args, device, clock, dtype_name))
        print(f"tokenizer training step {dtype_name}", flush=True)
        results["tokenizer_training"].append(check_tokenizer_training(args, device, clock, dtype_name))
        results["wall_s"] = time.perf_counter() - start
        write_report(results, output)
    print(output.read_text(), flush=True)
    return results


if __name__ == "__main__":
    main(parse_args())
