#!/usr/bin/env python
"""Train the class-conditional VCQ prior (`VCQForCausalLM`) on codes from `extract_codes.py` with 🤗 Accelerate.

Each sequence is `[class token, x_0, ..., x_{T-1}]`; the loss is next-token cross-entropy on the image tokens, and
the class token is replaced by the null class with probability `class_dropout_prob` (in the model) so the same
network also learns the unconditional distribution for classifier-free guidance. Every `--validation_steps` a
labelled grid (one row per class) is sampled to `output_dir/samples/` and the trackers. The output folder is a
complete `VCQPipeline` (`vq_model/`, `transformer/`, `model_index.json` with `id2label`) plus a model card:

    accelerate launch examples/train_ar.py --codes_dir fmnist-codes --model_config small \
        --train_batch_size 128 --max_train_steps 4000 --output_dir vcq-fmnist

    python -c "from vcq_hf import VCQPipeline; VCQPipeline.from_pretrained('vcq-fmnist')(class_labels=[0])"
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
from accelerate.logging import get_logger
from torch.utils.data import TensorDataset

from vcq_hf.configuration_vcq import VCQConfig
from vcq_hf.data.codes import META_FILENAME, load_codes_dataset
from vcq_hf.hub.model_card import save_model_card
from vcq_hf.modeling_vcq import VCQForCausalLM
from vcq_hf.modeling_vcq_vq import VCQVQModel
from vcq_hf.pipeline_vcq import VCQPipeline
from vcq_hf.sampling import check_sampling_settings
from vcq_hf.training_utils import scripts as tu
from vcq_hf.training_utils.checkpointing import register_pretrained_hooks, weights_fingerprint
from vcq_hf.training_utils.ema import create_ema
from vcq_hf.training_utils.files import explain_unreadable_weights


logger = get_logger(__name__, log_level="INFO")


def parse_args(input_args: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[1], formatter_class=argparse.RawTextHelpFormatter
    )
    group = parser.add_argument_group("data and model")
    group.add_argument("--codes_dir", type=str, required=True, help="A codes dataset saved by extract_codes.py.")
    group.add_argument(
        "--vq_model",
        "--vq_model_path",
        dest="vq_model_path",
        type=str,
        default=None,
        help="The tokenizer folder (default: the one the codes came from; --vq_model_path is the older spelling).",
    )
    group.add_argument(
        "--model_config",
        type=str,
        default="small",
        help="A VCQConfig preset (tiny, small, vcq-b, vcq-l, vcq-xl, vcq-684m), a config.json, or a model folder to "
        "fine-tune. The image fields (codebook_sizes, T) always come from the tokenizer.",
    )
    group.add_argument(
        "--config_overrides", type=str, nargs="*", default=None, help="Config fields, e.g. num_hidden_layers=6."
    )
    group.add_argument("--class_dropout_prob", type=float, default=None, help="Null-class rate (default: config's).")
    group.add_argument("--resolution", type=int, default=None, help="Must equal the tokenizer's image size if given.")
    group.add_argument("--max_train_samples", type=int, default=None, help="Truncate the codes dataset (debugging).")
    group.add_argument("--validation_steps", type=int, default=1000, help="Sample a labelled grid every X steps.")
    group.add_argument("--num_validation_images_per_class", type=int, default=4)
    group.add_argument(
        "--validation_guidance_scale",
        type=float,
        default=None,
        help="Guidance of the validation grids (default: the pipeline's, vcq_hf.sampling.DEFAULT_GUIDANCE_SCALE).",
    )
    group.add_argument("--max_validation_classes", type=int, default=10, help="Rows of the validation grid.")
    tu.add_common_training_args(parser, learning_rate=1e-3, train_batch_size=64, lr_warmup_steps=200)
    args = parser.parse_args(input_args)
    check_args(args)
    return args


def check_args(args: argparse.Namespace) -> None:
    tu.check_common_training_args(args)
    args.config_overrides = tu.parse_config_overrides(args.config_overrides)
    # A local folder must be a code set (extract_codes.py's vcq_meta.json, or a save_to_disk dataset whose info holds
    # the metadata); anything else is taken as a Hub dataset id and checked when it is loaded.
    codes_dir = Path(args.codes_dir)
    if codes_dir.exists() and not any((codes_dir / name).is_file() for name in (META_FILENAME, "dataset_info.json")):
        raise ValueError(
            f"--codes_dir {args.codes_dir!r} has neither {META_FILENAME} nor a saved dataset (run extract_codes.py "
            "first, or pass a Hub dataset id of a code set)."
        )
    if args.class_dropout_prob is not None and not 0.0 <= args.class_dropout_prob <= 1.0:
        raise ValueError(f"--class_dropout_prob = {args.class_dropout_prob} is out of range: it must be in [0, 1].")
    tu.check_max_train_samples(args)
    if args.validation_steps < 1 or args.num_validation_images_per_class < 1 or args.max_validation_classes < 1:
        raise ValueError(
            "--validation_steps, --num_validation_images_per_class, --max_validation_classes must be >= 1."
        )
    check_sampling_settings(guidance_scale=args.validation_guidance_scale)  # the pipeline's check
    tu.check_finite_flags(args)  # NaN passes every range check above


def build_model(args: argparse.Namespace, vq_config, num_classes: int) -> VCQForCausalLM:
    overrides = dict(args.config_overrides)
    overrides["num_classes"] = num_classes
    if args.class_dropout_prob is not None:
        overrides["class_dropout_prob"] = args.class_dropout_prob
    source = args.model_config
    if os.path.isdir(source):
        with explain_unreadable_weights(source):
            model = VCQForCausalLM.from_pretrained(source, **overrides)
        model.config.codebook_schedule.require_equal(
            vq_config.codebook_schedule,
            f"codebook_sizes of the model in {source}",
            "codebook_sizes of the tokenizer that made the codes",
        )
        return model
    if os.path.isfile(source):
        with open(source) as f:
            kwargs = json.load(f)
        for key in ("codebook_size", "codebook_sizes", "num_image_tokens", "vocab_size", "max_position_embeddings"):
            kwargs.pop(key, None)
        config = VCQConfig.from_vq_config(vq_config, **{**kwargs, **overrides})
    else:
        config = VCQConfig.from_vq_config(vq_config, preset=source, **overrides)
    return VCQForCausalLM(config)


@torch.no_grad()
def sample_grid(pipeline: VCQPipeline, args, class_ids: list[int], step: int | str, device) -> PIL.Image.Image:  # noqa: F821
    """One row per class, `num_validation_images_per_class` columns, seeded."""
    transformer = pipeline.transformer
    was_training = transformer.training
    transformer.eval()
    generator = torch.Generator(device="cpu").manual_seed(args.seed)
    images = pipeline(
        class_labels=class_ids,
        num_images_per_class=args.num_validation_images_per_class,
        guidance_scale=args.validation_guidance_scale,
        generator=generator,
        output_type="pil",
    ).images
    transformer.train(was_training)
    names = [pipeline.id2label.get(c, str(c)) for c in class_ids]
    scale = max(1, 64 // images[0].size[0])
    return tu.make_labelled_grid(images, names, num_columns=args.num_validation_images_per_class, scale=scale)


def main(args: argparse.Namespace) -> VCQPipeline:
    start_time = time.time()
    accelerator = tu.create_accelerator(args)
    tu.check_ema_supported(accelerator, args)

    codes_dataset, meta = load_codes_dataset(args.codes_dir)
    if args.max_train_samples is not None:
        codes_dataset = codes_dataset.select(range(min(args.max_train_samples, len(codes_dataset))))
    vq_model_path = args.vq_model_path or meta["vq_model_path"]
    with explain_unreadable_weights(vq_model_path):
        vq_model = VCQVQModel.from_pretrained(vq_model_path).eval().requires_grad_(False)
    vq_model.config.codebook_schedule.require_equal(
        meta["codebook_sizes"],
        f"codebook_sizes of the tokenizer {vq_model_path}",
        f"codebook_sizes of the codes in {args.codes_dir} (vcq_meta.json)",
    )
    # Another tokenizer with the same schedule would decode these codes into noise without any error: compare the
    # weights' fingerprint recorded when the codes were extracted (older code sets have none).
    expected = meta.get("vq_model_fingerprint")
    if expected is not None and weights_fingerprint(vq_model) != expected:
        raise ValueError(
            f"The tokenizer {vq_model_path} is not the one the codes in {args.codes_dir} were extracted with (its "
            f"weights' fingerprint differs from {expected}). Pass that tokenizer as --vq_model, or extract the "
            "codes again with this one."
        )
    if args.resolution is not None and args.resolution != vq_model.config.image_size:
        raise ValueError(
            f"--resolution {args.resolution} differs from the tokenizer's image_size {vq_model.config.image_size}."
        )
    class_names = list(meta["class_names"])
    id2label = dict(enumerate(class_names))

    model = build_model(args, vq_model.config, num_classes=len(class_names))
    if args.gradient_checkpointing:  # transformers >= 5.24 renamed it activation checkpointing
        getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)()
    ema = create_ema(model, args.ema_max_decay, args.ema_update_after_step) if args.use_ema else None
    logger.info(
        f"VCQForCausalLM: {model.num_parameters() / 1e6:.2f}M parameters; T={model.config.num_image_tokens}, "
        f"{len(class_names)} classes, class dropout {model.config.class_dropout_prob}"
    )

    # Codes are small (T int32 per image): keep them as tensors, no per-step Arrow decoding.
    columns = codes_dataset.with_format("numpy", columns=["codes", "label"])[:]
    train_dataset = TensorDataset(
        torch.from_numpy(columns["codes"].astype("int32")), torch.from_numpy(columns["label"].astype("int64"))
    )
    train_dataloader, optimizer, lr_scheduler, steps_per_epoch, max_train_steps, num_epochs = tu.prepare_training(
        accelerator, args, model, train_dataset
    )
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    vq_model.to(accelerator.device)
    if ema is not None:
        ema.to(accelerator.device)
    unwrapped = accelerator.unwrap_model(model)
    register_pretrained_hooks(
        accelerator,
        {VCQForCausalLM: "transformer"},
        ema_models={"transformer_ema": (ema, unwrapped) if ema is not None else None},
    )

    total_batch_size = tu.start_training_run(
        accelerator,
        args,
        logger,
        project_name="train_ar",
        num_examples=len(train_dataset),
        example_noun="sequences",
        max_train_steps=max_train_steps,
        num_epochs=num_epochs,
    )
    global_step, first_epoch, resume_batches = tu.load_resume_state(
        accelerator, args, steps_per_epoch, logger, optimizer, lr_scheduler
    )
    if tu.finished_run(args.output_dir, global_step, over=global_step >= max_train_steps):
        logger.info(f"{args.output_dir} already holds this run, finished at step {global_step}: nothing to do.")
        accelerator.end_training()
        return VCQPipeline.from_pretrained(args.output_dir) if accelerator.is_main_process else None

    pipeline = None
    if accelerator.is_main_process:
        pipeline = VCQPipeline(vq_model=vq_model, transformer=unwrapped, id2label=id2label)
        pipeline.set_progress_bar_config(disable=True)
    validation_classes = list(range(min(len(class_names), args.max_validation_classes)))

    progress_bar = tu.steps_progress_bar(accelerator, max_train_steps, global_step)
    window: list[float] = []
    last_logs: dict[str, float] = {}
    micro_step = 0
    model.train()
    for epoch, (codes, labels) in tu.epoch_batches(
        accelerator, train_dataloader, first_epoch, num_epochs, resume_batches
    ):
        if global_step >= max_train_steps:  # resumed at the last step: no step beyond it
            break
        # Class dropout draws from torch's global RNG: seed it per step so a resumed run repeats it exactly.
        tu.reseed_step(args.seed, global_step, micro_step, accelerator.process_index)
        input_ids = unwrapped.build_input_ids(labels, codes.long())  # (B, 1 + T)
        with accelerator.accumulate(model):
            loss = model(input_ids=input_ids, labels=input_ids).loss
            mean_loss = tu.backward_and_step(accelerator, args, model, optimizer, lr_scheduler, loss, global_step)
        micro_step += 1
        window.append(float(mean_loss))
        if not accelerator.sync_gradients:
            continue

        micro_step = 0
        global_step += 1
        progress_bar.update(1)
        if ema is not None:
            ema.step(unwrapped.parameters())

        if global_step % args.logging_steps == 0 or global_step == max_train_steps:
            last_logs = {"loss": sum(window) / len(window), "lr": lr_scheduler.get_last_lr()[0], "epoch": epoch}
            last_logs["bits_per_image"] = last_logs["loss"] * unwrapped.config.num_image_tokens / math.log(2)
            window = []
            accelerator.log(last_logs, step=global_step)
            progress_bar.set_postfix(loss=f"{last_logs['loss']:.4f}")

        if args.checkpointing_steps and global_step % args.checkpointing_steps == 0:
            # Never save a non-finite state: the last step's loss and all weights are checked first.
            tu.save_checkpoint(
                accelerator,
                args,
                global_step,
                check_modules={"transformer": unwrapped, "transformer_ema": ema},
                loss=float(mean_loss),
            )

        # Under FSDP a forward pass is collective, so rank-0-only sampling would hang: sample at the end only.
        sample_now = global_step % args.validation_steps == 0 and not tu.uses_sharded_states(accelerator)
        if accelerator.is_main_process and sample_now:
            log_samples(accelerator, args, pipeline, ema, unwrapped, validation_classes, global_step)

        if global_step >= max_train_steps:
            break
    progress_bar.close()

    accelerator.wait_for_everyone()
    tu.write_rank_report(accelerator, unwrapped, args.output_dir, global_step)
    # Under FSDP/DeepSpeed gathering the full state dict is a collective: every rank takes part.
    final_transformer = tu.gather_final_model(accelerator, model, unwrapped, ema, VCQForCausalLM, unwrapped.config)
    if accelerator.is_main_process:
        # Recorded so that VCQPipeline.from_pretrained refuses this prior next to any other tokenizer.
        final_transformer.config.vq_model_fingerprint = weights_fingerprint(vq_model)
        final = VCQPipeline(vq_model=vq_model, transformer=final_transformer, id2label=id2label)
        final.set_progress_bar_config(disable=True)
        final.save_pretrained(args.output_dir)
        grid = sample_grid(final, args, validation_classes, "final", accelerator.device)
        grid.save(Path(args.output_dir) / "sample_grid.png")
        summary = {
            **tu.training_summary(
                "train_ar.py",
                accelerator,
                global_step=global_step,
                max_train_steps=max_train_steps,
                total_batch_size=total_batch_size,
                start_time=start_time,
                last_logs=last_logs,
            ),
            "num_parameters": {
                "transformer": final_transformer.num_parameters(),
                "vq_model": vq_model.num_parameters(),
            },
            "num_train_sequences": len(train_dataset),
            "codes_dir": str(Path(args.codes_dir).resolve()),
        }
        tu.write_json(Path(args.output_dir) / "training_summary.json", summary)
        save_model_card(
            args.output_dir,
            kind="pipeline",
            vq_config=vq_model.config,
            ar_config=final_transformer.config,
            num_parameters=summary["num_parameters"],
            dataset=meta.get("dataset_name") or meta.get("train_data_dir"),
            num_train_images=meta.get("num_source_images"),
            id2label=id2label,
            training_args=tu.tracker_config(args),
            command=" ".join(["accelerate launch examples/train_ar.py", *sys.argv[1:]]),
            results=summary["final_logs"],
            code_usage=tokenizer_code_usage(vq_model_path),
            sample_image="sample_grid.png",
            repo_id=args.hub_model_id,
        )
        logger.info(f"Saved the VCQPipeline to {args.output_dir} ({summary['wall_time_s']} s).")
        if args.push_to_hub:
            tu.push_folder_to_hub(args, args.output_dir, f"train_ar.py: step {global_step}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    if accelerator.is_main_process:
        return final
    return None


def tokenizer_code_usage(vq_model_path: str) -> dict | None:
    """The per-position code usage train_tokenizer.py measured, if the tokenizer folder has its summary."""
    path = Path(vq_model_path) / "training_summary.json"
    if not path.is_file():
        return None
    with open(path) as f:
        return json.load(f).get("code_usage")


def log_samples(accelerator, args, pipeline, ema, model, class_ids, step) -> None:
    """Sample a labelled grid (EMA weights when used) to samples/step-<step>.png and the trackers."""
    if ema is not None:
        ema.store(model.parameters())
        ema.copy_to(model.parameters())
    try:
        grid = sample_grid(pipeline, args, class_ids, step, accelerator.device)
    finally:
        if ema is not None:
            ema.restore(model.parameters())
    samples_dir = Path(args.output_dir) / "samples"
    samples_dir.mkdir(parents=True, exist_ok=True)
    grid.save(samples_dir / f"step-{step:06d}.png")
    tu.log_images(accelerator, "samples", grid, step)


if __name__ == "__main__":
    tu.run_script(main, parse_args)
