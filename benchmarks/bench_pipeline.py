"""Benchmark: VCQPipeline's batched-CFG decode loop vs `transformer.generate` with transformers' CFG.

Both sample `batch_size` images of T tokens with classifier-free guidance on the same random model:

- `VCQPipeline`: one forward per position over a KV cache on a (2B) batch stacking conditional and null-class rows;
- `transformer.generate(..., guidance_scale=s, negative_prompt_ids=<null class>)`: transformers'
  `UnbatchedClassifierFreeGuidanceLogitsProcessor` runs a second, unbatched forward of the negative prompt per step.

The pipeline's time is split between the AR loop (`output_type="latent"`) and decoding the codes with the tokenizer.
Weights are random: only speed is measured. Run with `OMP_NUM_THREADS=1` for figures comparable across machines:

    OMP_NUM_THREADS=1 python benchmarks/bench_pipeline.py --repeats 3
"""

from __future__ import annotations

import argparse

import torch

from _timing import timed
from vcq_hf import VCQConfig, VCQForCausalLM, VCQVQConfig, VCQVQModel
from vcq_hf.pipeline_vcq import VCQPipeline


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--vq-preset", default="small-32px", help="VCQVQConfig preset (default: small-32px).")
    parser.add_argument("--ar-preset", default="small", help="VCQConfig preset (default: small).")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--guidance-scale", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=3, help="Timed runs per method (median reported).")
    parser.add_argument("--device", default="cpu")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device)
    torch.manual_seed(0)
    vq_config = VCQVQConfig.from_preset(args.vq_preset)
    ar_config = VCQConfig.from_vq_config(vq_config, preset=args.ar_preset)
    pipe = VCQPipeline(VCQVQModel(vq_config).eval(), VCQForCausalLM(ar_config).eval()).to(device)
    pipe.set_progress_bar_config(disable=True)
    transformer = pipe.transformer
    labels = [i % ar_config.num_classes for i in range(args.batch_size)]
    T, B, s = ar_config.num_image_tokens, args.batch_size, args.guidance_scale

    def pipeline_latent():
        return pipe(class_labels=labels, guidance_scale=s, generator=torch.manual_seed(0), output_type="latent").codes

    def pipeline_full():
        return pipe(class_labels=labels, guidance_scale=s, generator=torch.manual_seed(0), output_type="pt").images

    prompt = transformer.build_input_ids(labels).to(device)  # (B, 1)
    negative = torch.full_like(prompt, ar_config.null_class_token_id)

    def generate_cfg():
        return transformer.generate(prompt, guidance_scale=s, negative_prompt_ids=negative, do_sample=True)

    with torch.no_grad():
        t_full, _ = timed(pipeline_full, args.repeats, device)
        t_loop, codes = timed(pipeline_latent, args.repeats, device)
        t_decode, _ = timed(lambda: pipe.vq_model.decode(codes).sample, args.repeats, device)
        t_generate, generated = timed(generate_cfg, args.repeats, device)
    assert generated.shape == (B, 1 + T), generated.shape

    rows = [
        {"method": "VCQPipeline (AR loop + decode)", "seconds": t_full},
        {"method": "VCQPipeline AR loop only (latent)", "seconds": t_loop},
        {"method": "VCQVQModel.decode only", "seconds": t_decode},
        {"method": "transformer.generate + CFG (negative_prompt_ids)", "seconds": t_generate},
    ]
    n_params = transformer.num_parameters() / 1e6
    print(
        f"batch {B}, guidance {s}, T = {T} tokens, prior {args.ar_preset} ({n_params:.2f}M params), tokenizer "
        f"{args.vq_preset}, device {device}, torch threads {torch.get_num_threads()}, median of {args.repeats}\n"
    )
    print("| method | s / batch | images / s | tokens / s |")
    print("| --- | ---: | ---: | ---: |")
    for row in rows:
        images_per_s = B / row["seconds"]
        tokens = f"{B * T / row['seconds']:.0f}" if "decode only" not in row["method"] else "-"
        print(f"| {row['method']} | {row['seconds']:.3f} | {images_per_s:.1f} | {tokens} |")
    print(
        f"\nAR loop speed-up vs generate + CFG: {t_generate / t_loop:.2f}x; end to end (with decode): "
        f"{t_generate / t_full:.2f}x vs generate without decode. Split of the pipeline: AR loop "
        f"{100 * t_loop / (t_loop + t_decode):.0f}%, decode {100 * t_decode / (t_loop + t_decode):.0f}%."
    )
    return rows


if __name__ == "__main__":
    main(parse_args())
