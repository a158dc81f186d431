"""What the example training scripts share (`examples/train_tokenizer.py`, `train_ar.py`, `extract_codes.py`,
`sample.py`): diffusers' common flags and their checks, the `Accelerator` set-up with a local JSON-lines tracker, the
optimizer and LR schedule, resume and checkpoint calls with the script's flags, the NaN guard's update step, the data
and image helpers, and `run_script`, which turns bad input into a one-line error. Each function takes the scripts'
`argparse.Namespace`; the checkpoint, EMA and file-safety logic they call lives in `checkpointing`, `ema` and
`files`, next to this module.

The scripts import it as `from vcq_hf.training_utils import scripts as tu`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.tracking import GeneralTracker
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from . import checkpointing as ckpt
from .checkpointing import (
    CHECKPOINT_PREFIX,
    NonFiniteTrainingError,
    check_finite_gradients,
    check_finite_loss,
    checkpoint_step,
    uses_sharded_states,
)
from .files import CorruptWeightsError


logger = get_logger(__name__, log_level="INFO")

LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")


# ----------------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------------


def add_common_training_args(
    parser: argparse.ArgumentParser,
    *,
    learning_rate: float,
    train_batch_size: int,
    num_epochs: int = 10,
    lr_warmup_steps: int = 500,
    lr_scheduler: str = "cosine",
) -> None:
    """Add the flags every training script shares (diffusers' names and meanings)."""
    group = parser.add_argument_group("training")
    group.add_argument("--output_dir", type=str, required=True, help="Where checkpoints, logs and the model go.")
    group.add_argument("--seed", type=int, default=0, help="Seed for weights, data order and augmentation.")
    group.add_argument("--train_batch_size", type=int, default=train_batch_size, help="Batch size per device.")
    group.add_argument(
        "--dataloader_num_workers", type=int, default=0, help="DataLoader worker processes (0: main process)."
    )
    group.add_argument("--num_epochs", type=int, default=num_epochs, help="Epochs, unless --max_train_steps is set.")
    group.add_argument(
        "--max_train_steps", type=int, default=None, help="Total optimizer steps; overrides --num_epochs when set."
    )
    group.add_argument("--gradient_accumulation_steps", type=int, default=1, help="Micro-batches per optimizer step.")
    group.add_argument("--learning_rate", type=float, default=learning_rate, help="Peak learning rate.")
    group.add_argument(
        "--scale_lr",
        action="store_true",
        help="Multiply the learning rate by batch size x accumulation steps x number of processes.",
    )
    group.add_argument("--lr_scheduler", type=str, default=lr_scheduler, choices=LR_SCHEDULERS)
    group.add_argument("--lr_warmup_steps", type=int, default=lr_warmup_steps, help="Warm-up optimizer steps.")
    group.add_argument("--adam_beta1", type=float, default=0.9)
    group.add_argument("--adam_beta2", type=float, default=0.95)
    group.add_argument("--adam_weight_decay", type=float, default=0.05)
    group.add_argument("--adam_epsilon", type=float, default=1e-8)
    group.add_argument("--max_grad_norm", type=float, default=1.0, help="Gradient clipping norm (0: no clipping).")
    group.add_argument(
        "--mixed_precision",
        type=str,
        default=None,
        choices=["no", "fp16", "bf16"],
        help="Mixed precision; defaults to the value of `accelerate config` (or 'no').",
    )
    group.add_argument("--allow_tf32", action="store_true", help="Allow TF32 matmuls on Ampere+ GPUs.")
    group.add_argument(
        "--gradient_checkpointing",
        action="store_true",
        help="Recompute each transformer layer in the backward pass: less activation memory, ~30%% more compute.",
    )
    group.add_argument(
        "--checkpointing_steps",
        type=int,
        default=500,
        help="Save the full training state (checkpoint-{global_step}) every X optimizer steps (0: never).",
    )
    group.add_argument(
        "--checkpoints_total_limit", type=int, default=None, help="Keep at most this many checkpoint-* folders."
    )
    group.add_argument(
        "--resume_from_checkpoint",
        type=str,
        default=None,
        help="A checkpoint-* folder to resume from, or 'latest' for the newest one in --output_dir.",
    )
    group.add_argument("--use_ema", action="store_true", help="Keep an exponential moving average of the weights.")
    group.add_argument("--ema_max_decay", type=float, default=0.9999, help="Upper bound of the EMA decay.")
    group.add_argument(
        "--ema_update_after_step", type=int, default=0, help="Start averaging after this many optimizer steps."
    )
    group.add_argument("--logging_steps", type=int, default=10, help="Log scalars every X optimizer steps.")
    group.add_argument(
        "--report_to",
        type=str,
        default="jsonl",
        help=(
            "Comma-separated trackers: 'jsonl' (a local logs/metrics.jsonl), 'tensorboard', 'wandb', ..., 'all' or "
            "'none'. Any tracker other than 'none' is logged next to a local jsonl file."
        ),
    )
    group.add_argument("--logging_dir", type=str, default="logs", help="Tracker directory, relative to output_dir.")
    group.add_argument("--tracker_project_name", type=str, default=None, help="Project name for the trackers.")
    group.add_argument("--push_to_hub", action="store_true", help="Push the final model and its card to the Hub.")
    group.add_argument("--hub_model_id", type=str, default=None, help="Hub repo id (default: output_dir's name).")
    group.add_argument("--hub_token", type=str, default=None, help="Hub token (default: the cached login).")
    group.add_argument("--hub_private_repo", action="store_true", help="Create the Hub repo as private.")


def parse_config_overrides(items: list[str] | None) -> dict:
    """['schedule=constant', 'k_min=4'] -> {'schedule': 'constant', 'k_min': 4} (values parsed as JSON if possible)."""
    overrides = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--config_overrides item {item!r} must look like key=value.")
        key, value = item.split("=", 1)
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value
    return overrides


def check_finite_flags(args: argparse.Namespace) -> None:
    """Every float flag must be a finite number: `x < lo` is False for NaN, so range checks alone let NaN through."""
    for name, value in vars(args).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"--{name} = {value} is not a finite number.")


def check_common_training_args(args: argparse.Namespace) -> None:
    """Cross-flag checks of the common flags. Raises `ValueError` naming the bad value."""
    positive = {
        "train_batch_size": args.train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "logging_steps": args.logging_steps,
    }
    for name, value in positive.items():
        if value < 1:
            raise ValueError(f"--{name} = {value} is out of range: it must be >= 1.")
    if args.max_train_steps is None and (args.num_epochs is None or args.num_epochs < 1):
        raise ValueError(f"--num_epochs = {args.num_epochs} must be >= 1 when --max_train_steps is not given.")
    if args.max_train_steps is not None and args.max_train_steps < 1:
        raise ValueError(f"--max_train_steps = {args.max_train_steps} is out of range: it must be >= 1.")
    if args.learning_rate <= 0:
        raise ValueError(f"--learning_rate = {args.learning_rate} is out of range: it must be > 0.")
    if args.lr_warmup_steps < 0:
        raise ValueError(f"--lr_warmup_steps = {args.lr_warmup_steps} is out of range: it must be >= 0.")
    if args.dataloader_num_workers < 0:
        raise ValueError(f"--dataloader_num_workers = {args.dataloader_num_workers} must be >= 0.")
    if args.checkpointing_steps < 0:
        raise ValueError(f"--checkpointing_steps = {args.checkpointing_steps} must be >= 0 (0 disables).")
    if args.checkpoints_total_limit is not None:
        if args.checkpoints_total_limit < 1:
            raise ValueError(f"--checkpoints_total_limit = {args.checkpoints_total_limit} must be >= 1.")
        if args.checkpointing_steps == 0:
            raise ValueError("--checkpoints_total_limit needs --checkpointing_steps > 0 (checkpointing is off).")
    if not 0.0 <= args.ema_max_decay < 1.0:
        raise ValueError(f"--ema_max_decay = {args.ema_max_decay} is out of range: it must be in [0, 1).")
    if args.hub_model_id is not None and not args.push_to_hub:
        raise ValueError("--hub_model_id is set but --push_to_hub is not; add --push_to_hub or drop --hub_model_id.")
    trackers = parse_report_to(args.report_to)
    if args.hub_token is not None and "wandb" in trackers:
        raise ValueError(
            "You cannot use both --report_to=wandb and --hub_token: the token would be exposed. "
            "Log in with `hf auth login` instead."
        )
    if args.resume_from_checkpoint not in (None, "latest"):
        resolve_resume_checkpoint(args)  # names a missing, misnamed or poisoned checkpoint folder


def parse_report_to(report_to: str) -> list[str]:
    """'tensorboard,wandb' -> ['jsonl', 'tensorboard', 'wandb']; 'none' -> []."""
    names = [name.strip() for name in (report_to or "none").split(",") if name.strip()]
    if names == ["none"]:
        return []
    if "none" in names:
        raise ValueError(f"--report_to {report_to!r}: 'none' cannot be combined with other trackers.")
    return ["jsonl"] + [name for name in names if name != "jsonl"]


# ----------------------------------------------------------------------------------------------------------------------
# Accelerator, logging, trackers
# ----------------------------------------------------------------------------------------------------------------------


class JSONLTracker(GeneralTracker):
    """A local tracker: one JSON object per `log` call appended to `<logging_dir>/metrics.jsonl`."""

    name = "jsonl"
    requires_logging_directory = True
    main_process_only = True

    def __init__(self, run_name: str, logging_dir: str | os.PathLike):
        super().__init__()
        self.run_name = run_name
        self.logging_dir = Path(logging_dir)
        self.path = self.logging_dir / "metrics.jsonl"

    @property
    def tracker(self) -> Path:
        return self.path

    def start(self) -> None:
        self.logging_dir.mkdir(parents=True, exist_ok=True)

    def store_init_configuration(self, values: dict) -> None:
        self.start()
        with open(self.logging_dir / "hparams.json", "w") as f:
            json.dump(values, f, indent=2, sort_keys=True, default=str)

    def log(self, values: dict, step: int | None = None, **kwargs) -> None:
        self.start()
        record = {"step": step, "time": round(time.time(), 3)}
        for key, value in values.items():
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = value.item()
            if isinstance(value, (int, float, str, bool)) or value is None:
                record[key] = value
            elif isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value):
                record[key] = list(value)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def check_trackers_available(names: list[str]) -> None:
    """Raise `ValueError` for a requested tracker that cannot start: accelerate drops an unavailable one silently,
    so a run asked to log to tensorboard or wandb would otherwise log nowhere."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers

    available = {str(tracker) for tracker in get_available_trackers()}
    for name in names:
        if name in ("jsonl", "all"):
            continue
        if name not in LOGGER_TYPE_TO_CLASS:
            raise ValueError(
                f"--report_to {name!r} is not a tracker; choose from jsonl, all, none, "
                f"{', '.join(sorted(LOGGER_TYPE_TO_CLASS))}."
            )
        if name not in available:
            raise ValueError(
                f"--report_to {name!r} cannot start: its package is not installed (pip install {name}; tensorboard "
                "comes with vcq_hf[training]). Drop it from --report_to to log to logs/metrics.jsonl only."
            )


def setup_logging(accelerator: Accelerator) -> None:
    """INFO logs on the main process only; library warnings stay visible on every rank."""
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%m/%d/%Y %H:%M:%S", level=logging.INFO
    )
    import datasets
    import diffusers
    import transformers

    if accelerator.is_local_main_process:
        datasets.utils.logging.set_verbosity_warning()
        transformers.utils.logging.set_verbosity_warning()
        diffusers.utils.logging.set_verbosity_info()
    else:
        datasets.utils.logging.set_verbosity_error()
        transformers.utils.logging.set_verbosity_error()
        diffusers.utils.logging.set_verbosity_error()


def create_accelerator(args: argparse.Namespace, gradient_accumulation_steps: int | None = None) -> Accelerator:
    """`Accelerator` with a `ProjectConfiguration` rooted at `output_dir`, a seeded sampler and the chosen trackers."""
    logging_dir = Path(args.output_dir) / args.logging_dir
    project_config = ProjectConfiguration(project_dir=args.output_dir, logging_dir=str(logging_dir))
    # A seedable sampler makes the shuffled order a function of (seed, epoch) on every rank, which is what lets a
    # resumed run continue on exactly the same data stream.
    dataloader_config = DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed)
    log_with: list[Any] = []
    for name in parse_report_to(args.report_to):
        log_with.append(JSONLTracker(Path(args.output_dir).name or "run", logging_dir) if name == "jsonl" else name)
    check_trackers_available(parse_report_to(args.report_to))
    accelerator = Accelerator(
        gradient_accumulation_steps=gradient_accumulation_steps or args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=log_with or None,
        project_config=project_config,
        dataloader_config=dataloader_config,
    )
    setup_logging(accelerator)
    if args.seed is not None:
        set_seed(args.seed)
    if getattr(args, "allow_tf32", False) and torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)
    logger.info(accelerator.state, main_process_only=False)
    return accelerator


def tracker_config(args: argparse.Namespace) -> dict[str, Any]:
    """The args as tracker hyper-parameters (only scalars and strings; lists become strings)."""
    config = {}
    for key, value in vars(args).items():
        if isinstance(value, (int, float, str, bool)) or value is None:
            config[key] = value
        else:
            config[key] = str(value)
    config.pop("hub_token", None)
    return config


def log_images(accelerator: Accelerator, key: str, image: Image.Image, step: int) -> None:
    """Send one image (e.g. a sample grid) to the image-capable trackers."""
    array = np.asarray(image.convert("RGB"))
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.writer.add_images(key, array[None], step, dataformats="NHWC")
        elif tracker.name == "wandb":
            import wandb

            tracker.log({key: [wandb.Image(image)]}, step=step)


# ----------------------------------------------------------------------------------------------------------------------
# Steps, schedule, checkpoints
# ----------------------------------------------------------------------------------------------------------------------


def resolve_training_length(args: argparse.Namespace, num_batches_per_epoch: int) -> tuple[int, int, int]:
    """(steps per epoch, max_train_steps, num_epochs) given the per-process dataloader length."""
    if num_batches_per_epoch < 1:
        raise ValueError(
            "The training dataloader is empty: the data set has fewer examples than "
            f"--train_batch_size ({args.train_batch_size}) x number of processes."
        )
    steps_per_epoch = math.ceil(num_batches_per_epoch / args.gradient_accumulation_steps)
    max_train_steps = args.max_train_steps or args.num_epochs * steps_per_epoch
    num_epochs = math.ceil(max_train_steps / steps_per_epoch)
    return steps_per_epoch, max_train_steps, num_epochs


def create_optimizer(args: argparse.Namespace, parameters: Iterable[nn.Parameter] | Iterable[dict]):
    """AdamW with the common flags."""
    return torch.optim.AdamW(
        parameters,
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.adam_weight_decay,
        eps=args.adam_epsilon,
    )


def create_lr_scheduler(args: argparse.Namespace, optimizer, max_train_steps: int, num_processes: int):
    """diffusers' `get_scheduler`; the prepared scheduler steps once per process per optimizer step."""
    from diffusers.optimization import get_scheduler

    return get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * num_processes,
        num_training_steps=max_train_steps * num_processes,
    )


def save_checkpoint(
    accelerator: Accelerator,
    args: argparse.Namespace,
    global_step: int,
    check_modules: dict[str, nn.Module | None] | None = None,
    loss: float | None = None,
) -> Path:
    """`vcq_hf.training_utils.save_checkpoint` with the script's flags: finiteness checks of `loss` and
    `check_modules`, an atomic save, then rotation to --checkpoints_total_limit."""
    return ckpt.save_checkpoint(
        accelerator,
        args.output_dir,
        global_step,
        total_limit=args.checkpoints_total_limit,
        check_modules=check_modules,
        loss=loss,
        extra={"learning_rate": args.learning_rate},
    )


def resolve_resume_checkpoint(args: argparse.Namespace) -> Path | None:
    """The checkpoint folder named by --resume_from_checkpoint, the newest complete one for 'latest', or None."""
    return ckpt.resolve_resume_checkpoint(args.resume_from_checkpoint, args.output_dir)


# ----------------------------------------------------------------------------------------------------------------------
# EMA and the NaN guard
# ----------------------------------------------------------------------------------------------------------------------


def write_rank_report(
    accelerator: Accelerator, model: nn.Module, output_dir: str | os.PathLike, global_step: int
) -> Path:
    """Every rank writes `logs/rank-<k>.json` (world size, step, SHA-256 of its weights), so a multi-process run can
    be checked to be one data-parallel run: all ranks report the same world size and, under DDP, identical weights
    (under FSDP each rank hashes its own shard)."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        tensor = tensor.to_local() if hasattr(tensor, "to_local") else tensor  # FSDP2 DTensor: this rank's shard
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    path = Path(output_dir) / "logs" / f"rank-{accelerator.process_index}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(
        path,
        {
            "process_index": accelerator.process_index,
            "num_processes": accelerator.num_processes,
            "distributed_type": str(accelerator.distributed_type),
            "global_step": global_step,
            "weights_sha256": digest.hexdigest(),
        },
    )
    return path


def check_ema_supported(accelerator: Accelerator, args: argparse.Namespace) -> None:
    if args.use_ema and uses_sharded_states(accelerator):
        raise ValueError("--use_ema is not supported with FSDP/DeepSpeed (sharded parameters); drop --use_ema.")


def run_script(main: Callable[[argparse.Namespace], Any], parse_args: Callable[[], argparse.Namespace]) -> None:
    """`__main__` entry: run `main(parse_args())`. A bad flag or input file, a corrupt checkpoint or a non-finite
    loss or weights end the run with status 1 and a one-line error instead of a traceback."""
    from PIL import UnidentifiedImageError

    try:
        main(parse_args())
    except (NonFiniteTrainingError, CorruptWeightsError, ValueError, FileNotFoundError, PermissionError) as err:
        print(f"{Path(sys.argv[0]).name}: error: {err}", file=sys.stderr)
        sys.exit(1)
    except UnidentifiedImageError as err:  # names the file: "cannot identify image file '<path>'"
        print(f"{Path(sys.argv[0]).name}: error: {err}; remove or replace that file.", file=sys.stderr)
        sys.exit(1)


# ----------------------------------------------------------------------------------------------------------------------
# Training loop
# ----------------------------------------------------------------------------------------------------------------------


def prepare_training(
    accelerator: Accelerator, args: argparse.Namespace, model: nn.Module, train_dataset: torch.utils.data.Dataset
) -> tuple[DataLoader, torch.optim.Optimizer, Any, int, int, int]:
    """The data and optimisation set-up of a training script, in this order: a shuffled `drop_last` DataLoader,
    --scale_lr applied to `args.learning_rate`, AdamW over `model`'s parameters, the DataLoader sharded by
    `accelerator.prepare`, the training length and the LR scheduler. The model and optimizer are left for the script
    to prepare (with any modules of its own).

    Returns:
        `(train_dataloader, optimizer, lr_scheduler, steps_per_epoch, max_train_steps, num_epochs)`.
    """
    train_dataloader = DataLoader(
        train_dataset,
        batch_size=args.train_batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=args.dataloader_num_workers,
        persistent_workers=args.dataloader_num_workers > 0,
    )
    if args.scale_lr:
        args.learning_rate *= args.train_batch_size * args.gradient_accumulation_steps * accelerator.num_processes
    optimizer = create_optimizer(args, model.parameters())

    # Shard the data first: the schedule length depends on the per-process number of batches.
    train_dataloader = accelerator.prepare(train_dataloader)
    steps_per_epoch, max_train_steps, num_epochs = resolve_training_length(args, len(train_dataloader))
    lr_scheduler = create_lr_scheduler(args, optimizer, max_train_steps, accelerator.num_processes)
    return train_dataloader, optimizer, lr_scheduler, steps_per_epoch, max_train_steps, num_epochs


def start_training_run(
    accelerator: Accelerator,
    args: argparse.Namespace,
    script_logger: logging.LoggerAdapter,
    *,
    project_name: str,
    num_examples: int,
    example_noun: str,
    max_train_steps: int,
    num_epochs: int,
) -> int:
    """Start the trackers (main process; project --tracker_project_name, else `project_name`) and log the size of the
    run through the calling script's logger, as `Num <example_noun> = <num_examples>` etc.

    Returns:
        `int`: the total batch size per optimizer step (all processes, gradient accumulation included).
    """
    if accelerator.is_main_process:
        accelerator.init_trackers(args.tracker_project_name or project_name, config=tracker_config(args))

    total_batch_size = args.train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    script_logger.info("***** Running training *****")
    script_logger.info(f"  Num {example_noun} = {num_examples}")
    script_logger.info(f"  Num processes = {accelerator.num_processes}")
    script_logger.info(f"  Instantaneous batch size per device = {args.train_batch_size}")
    script_logger.info(f"  Total train batch size (w. parallel, distributed & accumulation) = {total_batch_size}")
    script_logger.info(f"  Total optimization steps = {max_train_steps} ({num_epochs} epochs)")
    return total_batch_size


def load_resume_state(
    accelerator: Accelerator,
    args: argparse.Namespace,
    steps_per_epoch: int,
    script_logger: logging.LoggerAdapter,
    optimizer: torch.optim.Optimizer | None = None,
    lr_scheduler=None,
) -> tuple[int, int, int]:
    """Load the full training state of the checkpoint --resume_from_checkpoint names, if any. The checkpoint's
    optimizer and scheduler carry the learning rate it was trained with; a different --learning_rate is applied to
    them (the schedule continues at the same position with the new peak) and logged.

    Raises:
        `IncompatibleCheckpointError`: a part of the checkpoint (model, EMA, optimizer, a script's extra state) was
            written by a run with another model config or other flags; one line naming it and what differs.

    Returns:
        `(global_step, first_epoch, resume_batches)`: optimizer steps already done, the epoch to continue in and how
        many of its micro-batches were consumed (all zero for a new run).
    """
    global_step, first_epoch, resume_batches = 0, 0, 0
    resume_path = resolve_resume_checkpoint(args)
    if resume_path is not None:
        try:
            accelerator.load_state(str(resume_path))
        except (ValueError, KeyError) as err:  # e.g. torch: "... parameter group that doesn't match the size ..."
            if isinstance(err, ckpt.IncompatibleCheckpointError):
                raise
            raise ckpt.IncompatibleCheckpointError(
                f"{resume_path} cannot be resumed by this run ({type(err).__name__}: {err}). " + ckpt.RESUME_ADVICE
            ) from err
        ckpt.check_optimizer_state(accelerator._optimizers, resume_path)  # every optimizer accelerate prepared
        if optimizer is not None and lr_scheduler is not None:
            stored = ckpt.apply_learning_rate(optimizer, lr_scheduler, args.learning_rate)
            if stored is not None:
                script_logger.warning(
                    f"{resume_path.name} was trained with --learning_rate {stored}; continuing with "
                    f"--learning_rate {args.learning_rate} as asked (the schedule keeps its position)."
                )
        global_step = checkpoint_step(resume_path)
        first_epoch = global_step // steps_per_epoch
        resume_batches = (global_step % steps_per_epoch) * args.gradient_accumulation_steps
        script_logger.info(f"Resumed from {resume_path} at step {global_step} (epoch {first_epoch}).")
    return global_step, first_epoch, resume_batches


def steps_progress_bar(accelerator: Accelerator, max_train_steps: int, global_step: int):
    """A progress bar over optimizer steps, starting at `global_step`, shown on the local main process only."""
    from tqdm.auto import tqdm

    return tqdm(
        range(max_train_steps), initial=global_step, desc="Steps", disable=not accelerator.is_local_main_process
    )


def finished_run(output_dir: str | os.PathLike, global_step: int, over: bool) -> bool:
    """Whether `output_dir` already holds this run's final save: the run resumed at `global_step` where it is `over`
    (its step cap or time budget reached) and its `training_summary.json` records that same step. Rerunning a
    finished command must leave its weights and summary as they are; without this check the loop trained one step
    past the end and the summary was rewritten with the seconds of the rerun. An unreadable summary counts as not
    saved (the final save runs again, without a training step)."""
    path = Path(output_dir) / "training_summary.json"
    if not over or not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("global_step") == global_step
    except ValueError:
        return False


def epoch_batches(
    accelerator: Accelerator, train_dataloader, first_epoch: int, num_epochs: int, resume_batches: int
) -> Iterator[tuple[int, Any]]:
    """`(epoch, batch)` for the epochs `first_epoch .. num_epochs - 1`, the first one without the `resume_batches`
    micro-batches a resumed run already consumed. Each epoch's order comes from `set_epoch(epoch)` on the seeded
    sampler, so it is the same whether or not the run was interrupted. Leave the loop to stop early."""
    for epoch in range(first_epoch, num_epochs):
        train_dataloader.set_epoch(epoch)
        active = train_dataloader
        if epoch == first_epoch and resume_batches:
            active = accelerator.skip_first_batches(train_dataloader, resume_batches)
            active.set_epoch(epoch)
        for batch in active:
            yield epoch, batch


def backward_and_step(
    accelerator: Accelerator,
    args: argparse.Namespace,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    lr_scheduler,
    loss: torch.Tensor,
    global_step: int,
) -> torch.Tensor:
    """One micro-step's update, inside `accelerator.accumulate`: the NaN guard (`check_finite_loss`, before anything
    changes), backward, clipping to --max_grad_norm and the gradient guard (`check_finite_gradients`) when gradients
    synchronise, optimizer and scheduler steps and zeroed gradients. Returns the loss averaged over the processes."""
    mean_loss = check_finite_loss(accelerator, loss, global_step, args.output_dir)
    accelerator.backward(loss)
    if accelerator.sync_gradients:
        # The norm is computed even without clipping (max_norm inf): non-finite gradients stop the run before the
        # optimizer writes them into the weights. fp16 loss scaling skips such steps itself.
        max_norm = args.max_grad_norm if args.max_grad_norm > 0 else float("inf")
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), max_norm)
        if accelerator.scaler is None and grad_norm is not None:
            check_finite_gradients(accelerator, grad_norm, global_step, args.output_dir)
    optimizer.step()
    lr_scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return mean_loss


def gather_final_model(
    accelerator: Accelerator,
    model: nn.Module,
    unwrapped: nn.Module,
    ema,
    model_class: type[nn.Module],
    config: Any,
) -> nn.Module | None:
    """The trained model to save, on the main process (None elsewhere): the unwrapped model, holding the averaged
    weights when `ema` (a diffusers `EMAModel`) is given; under FSDP/DeepSpeed (no EMA) a new `model_class(config)`
    holding the gathered full state dict. Gathering is a collective, so every rank must call this."""
    if ema is not None:
        ema.copy_to(unwrapped.parameters())  # the averaged weights are the trained model
    full_state = accelerator.get_state_dict(model) if uses_sharded_states(accelerator) else None
    if not accelerator.is_main_process:
        return None
    final = unwrapped
    if full_state is not None:
        final = model_class(config)
        final.load_state_dict(full_state)
    return final


def training_summary(
    script: str,
    accelerator: Accelerator,
    *,
    global_step: int,
    max_train_steps: int,
    total_batch_size: int,
    start_time: float,
    last_logs: dict[str, float],
) -> dict[str, Any]:
    """The first entries of a script's `training_summary.json`: run length, processes, batch size, wall time and the
    last logged scalars (rounded); the script adds its own entries after them."""
    return {
        "script": script,
        "global_step": global_step,
        "max_train_steps": max_train_steps,
        "num_processes": accelerator.num_processes,
        "total_batch_size": total_batch_size,
        "wall_time_s": round(time.time() - start_time, 1),
        "final_logs": {k: round(float(v), 6) for k, v in last_logs.items()},
    }


# ----------------------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------------------


def load_images(args: argparse.Namespace, split: str = "train", resolution: int | None = None):
    """A `datasets.Dataset` with "image" (PIL) and "label" columns from --dataset_name or --train_data_dir."""
    from vcq_hf.data import BUILTIN_DATASETS, load_image_dataset

    # Built-in sets are built (and cached) at the target size; others are resized by the image processor on the fly
    # instead of `Dataset.map` writing a resized copy of a possibly huge data set.
    builtin = args.dataset_name in BUILTIN_DATASETS
    dataset = load_image_dataset(
        dataset_name=args.dataset_name,
        train_data_dir=args.train_data_dir,
        split=split,
        resolution=resolution if builtin else None,
        image_column=None if builtin else args.image_column,
    )
    if getattr(args, "max_train_samples", None) is not None:
        dataset = dataset.select(range(min(args.max_train_samples, len(dataset))))
    return dataset


def add_dataset_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument(
        "--dataset_name",
        type=str,
        default=None,
        help="A built-in data set ('fashion-mnist', 'emoji', 'digits') or a Hub dataset id.",
    )
    group.add_argument("--train_data_dir", type=str, default=None, help="An imagefolder directory.")
    group.add_argument("--split", type=str, default="train", help="Data set split.")
    group.add_argument("--image_column", type=str, default=None, help="Column holding the images (auto-detected).")
    group.add_argument("--max_train_samples", type=int, default=None, help="Truncate the data set (debugging).")


def check_dataset_args(args: argparse.Namespace) -> None:
    if (args.dataset_name is None) == (args.train_data_dir is None):
        raise ValueError("Pass exactly one of --dataset_name and --train_data_dir.")
    check_max_train_samples(args)


def check_max_train_samples(args: argparse.Namespace) -> None:
    if args.max_train_samples is not None and args.max_train_samples < 1:
        raise ValueError(f"--max_train_samples = {args.max_train_samples} must be >= 1.")


def label_names(dataset) -> list[str] | None:
    """Class names of the "label" column when it is a `ClassLabel`."""
    feature = dataset.features.get("label") if "label" in dataset.column_names else None
    return list(feature.names) if getattr(feature, "names", None) else None


def images_to_uint8(
    dataset, image_processor, batch_size: int = 1024, desc: str = "Preprocessing", disable: bool = False
) -> torch.Tensor:
    """Run the image processor once over all images and keep them as a uint8 (N, C, H, W) tensor.

    The processor maps pixels to [-1, 1] in steps of 2/255, so `round((x + 1) * 127.5)` is lossless and the data
    set costs 1 byte per value in memory (Fashion-MNIST at 32x32 RGB: 184 MB) with no per-step PIL decoding.
    """
    from tqdm.auto import tqdm

    chunks = []
    for start in tqdm(range(0, len(dataset), batch_size), desc=desc, disable=disable):
        images = dataset[start : start + batch_size]["image"]
        pixel_values = image_processor(images, return_tensors="pt")["pixel_values"]
        chunks.append(pixel_values_to_uint8(pixel_values))
    return torch.cat(chunks)


def pixel_values_to_uint8(pixel_values: torch.Tensor) -> torch.Tensor:
    return ((pixel_values.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


def uint8_to_pixel_values(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1.0


def reseed_step(seed: int, *keys: int) -> None:
    """Seed torch's global RNGs from (seed, keys), e.g. (seed, global_step, micro_step, rank), before a step.

    Randomness inside models (class dropout, dropout layers) then depends only on the step, not on how many random
    numbers earlier code drew, so a resumed run repeats the uninterrupted run exactly.
    """
    torch.manual_seed(int(seeded_generator(seed, *keys).initial_seed()))


def seeded_generator(seed: int, *keys: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A generator whose state depends only on (seed, keys): augmentation that is identical after a resume."""
    value = seed
    for key in keys:
        value = (value * 1_000_003 + int(key)) % (2**63 - 1)
    return torch.Generator(device=device).manual_seed(value)


# ----------------------------------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------------------------------


def make_labelled_grid(
    images: Sequence[Image.Image], labels: Sequence[str] | None, num_columns: int, scale: int = 1
) -> Image.Image:
    """Rows of `num_columns` images; row r is captioned with `labels[r]` on its left when labels are given."""
    if not images:
        raise ValueError("make_labelled_grid needs at least one image.")
    from vcq_hf.utils.image_grid import make_labelled_grid as library_grid

    return library_grid(images, num_columns, row_labels=labels, cell_size=images[0].width * scale)


def write_json(path: str | os.PathLike, data: dict[str, Any]) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=2, default=str)
        f.write("\n")


def push_folder_to_hub(args: argparse.Namespace, folder: str | os.PathLike, commit_message: str) -> str:
    """Create the Hub repo if needed and upload `folder` without checkpoints and logs. Returns the repo id."""
    from huggingface_hub import create_repo, upload_folder

    repo_id = create_repo(
        repo_id=args.hub_model_id or Path(args.output_dir).name,
        exist_ok=True,
        token=args.hub_token,
        private=args.hub_private_repo,
    ).repo_id
    upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        commit_message=commit_message,
        ignore_patterns=[f"{CHECKPOINT_PREFIX}-*", f"{CHECKPOINT_PREFIX}-*/**", "logs/**", "samples/**", "_shards/**"],
        token=args.hub_token,
    )
    return repo_id
