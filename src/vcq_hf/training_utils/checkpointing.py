"""Training checkpoints that never lose a user's work: atomic saves, rotation after the new one is complete,
`latest` that skips incomplete or poisoned checkpoints, and the finiteness checks that keep NaN out of every save.

A checkpoint is the folder `<output_dir>/checkpoint-<global_step>` written by `Accelerator.save_state`, with the
models as `save_pretrained` folders (`register_pretrained_hooks`). `save_checkpoint` writes it under the temporary
name `.checkpoint-<step>.tmp`, adds the completion marker `checkpoint_complete.json` and renames it into place; only
then are old checkpoints rotated away. A folder without the marker is not a complete checkpoint: `latest` passes it
over and says so, rotation never counts or deletes it. When the loss becomes non-finite, a checkpoint saved at that
same step holds exactly the weights that produced it; it gets the note `checkpoint_nonfinite.json` and is never
recommended or picked by `latest` again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .files import CorruptWeightsError, atomic_write_json, explain_unreadable_weights, replace_folder


if TYPE_CHECKING:
    import torch
    from accelerate import Accelerator
    from torch import nn


logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint"
CHECKPOINT_MARKER = "checkpoint_complete.json"
NONFINITE_NOTE = "checkpoint_nonfinite.json"
_CHECKPOINT_RE = re.compile(rf"^{CHECKPOINT_PREFIX}-(\d+)$")

__all__ = [
    "CHECKPOINT_MARKER",
    "CHECKPOINT_PREFIX",
    "NONFINITE_NOTE",
    "CorruptCheckpointError",
    "IncompatibleCheckpointError",
    "NonFiniteTrainingError",
    "apply_learning_rate",
    "check_finite_gradients",
    "check_finite_loss",
    "check_finite_modules",
    "checkpoint_step",
    "is_complete_checkpoint",
    "last_good_checkpoint",
    "list_checkpoints",
    "load_module",
    "mark_nonfinite",
    "nonfinite_tensors",
    "read_marker",
    "read_safetensors",
    "register_pretrained_hooks",
    "resolve_resume_checkpoint",
    "rotate_checkpoints",
    "save_checkpoint",
    "save_module",
    "stop_on_nonfinite_weights",
    "uses_sharded_states",
    "weights_fingerprint",
    "check_optimizer_state",
]


class NonFiniteTrainingError(RuntimeError):
    """The loss or the weights became NaN or infinite. Nothing non-finite was saved; the message names the newest
    checkpoint that is safe to resume from."""


class CorruptCheckpointError(CorruptWeightsError):
    """A weights file of a checkpoint cannot be read (truncated or corrupt); the message names the file."""


class IncompatibleCheckpointError(ValueError):
    """A checkpoint, or a part of it (model, EMA, discriminator, optimizer, clock), was written by a run with another
    model config or other flags than the run resuming from it. The one-line message names the folder, what differs
    and what to do; nothing in the checkpoint is changed."""


RESUME_ADVICE = (
    "Resume from a checkpoint saved with the same model config and flags, or start a new run in another "
    "--output_dir (the checkpoint was left unchanged)."
)


# ----------------------------------------------------------------------------------------------------------------------
# Listing and choosing checkpoints
# ----------------------------------------------------------------------------------------------------------------------


def checkpoint_step(path: str | os.PathLike) -> int:
    """The global step encoded in a checkpoint-<step> folder name."""
    match = _CHECKPOINT_RE.match(Path(path).name)
    if match is None:
        raise ValueError(f"{str(path)!r} is not a {CHECKPOINT_PREFIX}-<global_step> folder.")
    return int(match.group(1))


def list_checkpoints(output_dir: str | os.PathLike, complete_only: bool = False) -> list[Path]:
    """The checkpoint-<step> folders of `output_dir`, oldest (lowest step) first; with `complete_only`, only those
    with the completion marker and without the non-finite note."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _CHECKPOINT_RE.match(p.name)]
    if complete_only:
        found = [p for p in found if is_complete_checkpoint(p) and not (p / NONFINITE_NOTE).exists()]
    return sorted(found, key=checkpoint_step)


def is_complete_checkpoint(path: str | os.PathLike) -> bool:
    """True if `path` holds the completion marker that `save_checkpoint` writes last."""
    return (Path(path) / CHECKPOINT_MARKER).is_file()


def _why_unusable(path: Path) -> str | None:
    if (path / NONFINITE_NOTE).is_file():
        return "its weights produced a non-finite loss"
    if not is_complete_checkpoint(path):
        return f"incomplete (no {CHECKPOINT_MARKER}: the save was interrupted or an older vcq_hf wrote it)"
    return None


def last_good_checkpoint(output_dir: str | os.PathLike, before_step: int | None = None) -> Path | None:
    """The newest complete, finite checkpoint (optionally with a step below `before_step`), or None."""
    checkpoints = list_checkpoints(output_dir, complete_only=True)
    if before_step is not None:
        checkpoints = [p for p in checkpoints if checkpoint_step(p) < before_step]
    return checkpoints[-1] if checkpoints else None


def resolve_resume_checkpoint(resume_from_checkpoint: str | None, output_dir: str | os.PathLike) -> Path | None:
    """The checkpoint to resume from: the folder named, or for "latest" the newest complete, finite checkpoint in
    `output_dir` (newer unusable ones are passed over with a warning that says why). None for a new run.

    Raises:
        `ValueError`: the named folder does not exist, is not a checkpoint-<step> folder or holds weights that
            produced a non-finite loss; or "latest" finds checkpoints but none is usable.
    """
    if resume_from_checkpoint is None:
        return None
    if resume_from_checkpoint == "latest":
        every = list_checkpoints(output_dir)
        chosen = last_good_checkpoint(output_dir)
        skipped = [p for p in every if chosen is None or checkpoint_step(p) > checkpoint_step(chosen)]
        for path in skipped:
            logger.warning(f"--resume_from_checkpoint latest: skipping {path.name}: {_why_unusable(path)}.")
        if chosen is None and every:
            raise ValueError(
                f"--resume_from_checkpoint latest: none of the checkpoints in {output_dir} can be resumed from "
                f"({', '.join(p.name for p in every)}: see the warnings above). Pass one explicitly to load it "
                "anyway, or start a new run without --resume_from_checkpoint."
            )
        if chosen is None:
            logger.info(f"--resume_from_checkpoint latest: no checkpoint in {output_dir}; starting a new run.")
        elif skipped:
            logger.warning(f"--resume_from_checkpoint latest: resuming from {chosen.name}, the newest complete one.")
        return chosen
    path = Path(resume_from_checkpoint)
    if not path.is_absolute() and not path.exists():
        path = Path(output_dir) / path
    if not path.is_dir():
        raise ValueError(f"--resume_from_checkpoint {resume_from_checkpoint!r}: no such checkpoint folder.")
    if not _CHECKPOINT_RE.match(path.name):
        raise ValueError(
            f"--resume_from_checkpoint {resume_from_checkpoint!r}: the folder must be named "
            f"{CHECKPOINT_PREFIX}-<global_step>."
        )
    if (path / NONFINITE_NOTE).is_file():
        raise ValueError(
            f"--resume_from_checkpoint {path}: its weights produced a non-finite loss (see {NONFINITE_NOTE}); "
            "resume from an earlier checkpoint."
        )
    if not is_complete_checkpoint(path):
        logger.warning(f"{path} has no {CHECKPOINT_MARKER} (interrupted save or older vcq_hf); loading it anyway.")
    return path


# ----------------------------------------------------------------------------------------------------------------------
# Finiteness
# ----------------------------------------------------------------------------------------------------------------------


def nonfinite_tensors(module: nn.Module, limit: int = 3) -> list[str]:
    """Names of up to `limit` floating-point parameters or buffers of `module` (or shadow parameters of a diffusers
    `EMAModel`, named by position) that hold NaN or inf."""
    import torch

    bad = []
    if hasattr(module, "shadow_params"):  # diffusers.training_utils.EMAModel
        named = [(f"shadow_params[{i}]", tensor) for i, tensor in enumerate(module.shadow_params)]
    else:
        named = [*module.named_parameters(), *module.named_buffers()]
    for name, tensor in named:
        if tensor.is_floating_point() and tensor.numel() and not bool(torch.isfinite(tensor).all()):
            bad.append(name)
            if len(bad) >= limit:
                break
    return bad


def _advice(output_dir: str | os.PathLike, before_step: int | None) -> str:
    good = last_good_checkpoint(output_dir, before_step)
    where = (
        f"The last good checkpoint is {good}: resume with --resume_from_checkpoint {good}"
        if good is not None
        else "No finite checkpoint was saved yet: start again"
    )
    return (
        f"{where}, with a lower --learning_rate, more --lr_warmup_steps, --mixed_precision bf16 instead of fp16 "
        "or a smaller --max_grad_norm."
    )


def mark_nonfinite(path: str | os.PathLike, global_step: int, reason: str) -> None:
    """Note in a complete checkpoint that its weights produced a non-finite value (nothing in it is deleted)."""
    atomic_write_json(Path(path) / NONFINITE_NOTE, {"global_step": global_step, "reason": reason})


def check_finite_loss(
    accelerator: Accelerator, loss: torch.Tensor, global_step: int, output_dir: str | os.PathLike
) -> torch.Tensor:
    """Mean loss over all ranks; raises `NonFiniteTrainingError` on every rank at once if any rank's loss is NaN/inf.

    Call it before `backward`, so the step that produced the bad loss never updates the weights. A checkpoint saved
    at `global_step` holds exactly the weights that gave this loss: it is marked and never recommended.
    """
    import torch

    mean_loss = accelerator.reduce(loss.detach().float().reshape(1), reduction="mean")
    if not torch.isfinite(mean_loss).all():
        value = mean_loss.item()
        same = Path(output_dir) / f"{CHECKPOINT_PREFIX}-{global_step}"
        if accelerator.is_main_process and is_complete_checkpoint(same):
            mark_nonfinite(same, global_step, f"loss {value} at optimizer step {global_step + 1}")
        accelerator.wait_for_everyone()
        raise NonFiniteTrainingError(
            f"The training loss became {value} at optimizer step {global_step + 1}; stopping. "
            + _advice(output_dir, global_step)
        )
    return mean_loss


def check_finite_gradients(
    accelerator: Accelerator, grad_norm: torch.Tensor | float, global_step: int, output_dir: str | os.PathLike
) -> None:
    """Raise `NonFiniteTrainingError` when the gradient norm of optimizer step `global_step + 1` is NaN or inf.

    Call it after `clip_grad_norm_` and before `optimizer.step()`, so non-finite gradients never reach the weights.
    They are a property of the current weights and the (deterministically resumed) batch, whatever the learning
    rate: a checkpoint saved at `global_step` would fail the same way, so it is marked and never recommended.
    Skip it under fp16 loss scaling, whose scaler skips such steps by design.
    """
    value = float(grad_norm)
    if math.isfinite(value):
        return
    same = Path(output_dir) / f"{CHECKPOINT_PREFIX}-{global_step}"
    if accelerator.is_main_process and is_complete_checkpoint(same):
        mark_nonfinite(same, global_step, f"gradient norm {value} at optimizer step {global_step + 1}")
    accelerator.wait_for_everyone()
    raise NonFiniteTrainingError(
        f"The gradient norm became {value} at optimizer step {global_step + 1}; stopping before it reaches the "
        "weights. " + _advice(output_dir, global_step)
    )


def check_finite_modules(
    accelerator: Accelerator, modules: dict[str, nn.Module | None], global_step: int, output_dir: str | os.PathLike
) -> None:
    """Raise `NonFiniteTrainingError` on every rank if any rank's `modules` (name -> module) hold NaN or inf."""
    import torch

    found = {name: nonfinite_tensors(module) for name, module in modules.items() if module is not None}
    found = {name: bad for name, bad in found.items() if bad}
    flag = torch.tensor([float(bool(found))], device=accelerator.device)
    if accelerator.reduce(flag, reduction="sum").item() > 0:
        where = "; ".join(f"{name}: {', '.join(bad)}" for name, bad in found.items()) or "on another process"
        raise NonFiniteTrainingError(
            f"The weights became non-finite by optimizer step {global_step} ({where}); stopping without saving "
            "them. " + _advice(output_dir, global_step + 1)
        )


@contextlib.contextmanager
def stop_on_nonfinite_weights(
    accelerator: Accelerator, modules: dict[str, nn.Module], global_step: int, output_dir: str | os.PathLike
) -> Iterator[None]:
    """Turn an error raised inside the block (e.g. the quantizer refusing NaN latents) into `NonFiniteTrainingError`
    when the weights of `modules` are what went non-finite; other errors pass through unchanged. A checkpoint saved
    at `global_step` holds those weights: it is marked and never recommended."""
    try:
        yield
    except (ValueError, RuntimeError) as err:
        if isinstance(err, NonFiniteTrainingError):
            raise
        found = {name: nonfinite_tensors(module) for name, module in modules.items()}
        found = {name: bad for name, bad in found.items() if bad}
        if not found:
            raise
        where = "; ".join(f"{name}: {', '.join(bad)}" for name, bad in found.items())
        same = Path(output_dir) / f"{CHECKPOINT_PREFIX}-{global_step}"
        if accelerator.is_main_process and is_complete_checkpoint(same):
            mark_nonfinite(same, global_step, f"non-finite weights ({where})")
        raise NonFiniteTrainingError(
            f"The weights became non-finite by optimizer step {global_step} ({where}), so the forward pass failed "
            f"({type(err).__name__}); stopping. " + _advice(output_dir, global_step)
        ) from err


# ----------------------------------------------------------------------------------------------------------------------
# Saving, rotating and loading
# ----------------------------------------------------------------------------------------------------------------------


def rotate_checkpoints(output_dir: str | os.PathLike, total_limit: int | None) -> list[Path]:
    """Delete the oldest complete checkpoints so that at most `total_limit` complete ones remain. Incomplete
    folders are neither counted nor deleted; folders with the non-finite note are kept for inspection."""
    if total_limit is None:
        return []
    checkpoints = list_checkpoints(output_dir, complete_only=True)
    removed = checkpoints[: max(len(checkpoints) - total_limit, 0)]
    if removed:
        logger.info(f"Removing {len(removed)} old checkpoint(s): {', '.join(p.name for p in removed)}")
    for path in removed:
        shutil.rmtree(path)
    return removed


def save_checkpoint(
    accelerator: Accelerator,
    output_dir: str | os.PathLike,
    global_step: int,
    *,
    total_limit: int | None = None,
    check_modules: dict[str, nn.Module | None] | None = None,
    loss: float | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save the full training state atomically as `output_dir/checkpoint-<global_step>`, then rotate.

    Order: the finiteness checks (`loss`, `check_modules`: nothing non-finite is ever saved), `save_state` on every
    rank (FSDP/DeepSpeed write their shards) into `.checkpoint-<step>.tmp`, the completion marker (with `extra`),
    the rename into place, and only then the deletion of the oldest complete checkpoints beyond `total_limit`.
    A kill at any point leaves every earlier checkpoint intact.
    """
    if loss is not None and not math.isfinite(loss):
        raise NonFiniteTrainingError(
            f"The training loss is {loss} at optimizer step {global_step}; not saving. "
            + _advice(output_dir, global_step + 1)
        )
    if check_modules:
        check_finite_modules(accelerator, check_modules, global_step, output_dir)
    output_dir = Path(output_dir)
    final = output_dir / f"{CHECKPOINT_PREFIX}-{global_step}"
    tmp = output_dir / f".{final.name}.tmp"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)  # left by an interrupted save of this step; this project named it
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        marker = {"global_step": global_step, "time": round(time.time(), 3), **(extra or {})}
        if loss is not None:
            marker["loss"] = loss
        atomic_write_json(tmp / CHECKPOINT_MARKER, marker)
        replace_folder(tmp, final, marker=CHECKPOINT_MARKER)
        rotate_checkpoints(output_dir, total_limit)
        logger.info(f"Saved state to {final}")
    accelerator.wait_for_everyone()
    return final


def apply_learning_rate(optimizer, lr_scheduler, learning_rate: float) -> float | None:
    """Make a resumed run use `learning_rate` as its peak rate instead of the one stored in the checkpoint.

    `load_state` restores the optimizer's and the scheduler's rates from the checkpoint; this rescales the
    scheduler's base rates, the optimizer's initial and current rates by `learning_rate / stored`, so the schedule
    continues at the same position with the new peak. Returns the stored peak rate when it differed, else None.
    """
    scheduler = getattr(lr_scheduler, "scheduler", lr_scheduler)  # accelerate's AcceleratedScheduler wraps it
    stored = float(scheduler.base_lrs[0])
    if math.isclose(stored, learning_rate, rel_tol=1e-12, abs_tol=0.0):
        return None
    ratio = learning_rate / stored
    scheduler.base_lrs = [base * ratio for base in scheduler.base_lrs]
    optimizers = getattr(optimizer, "optimizer", optimizer)
    for group in optimizers.param_groups:
        group["lr"] = group["lr"] * ratio
        if "initial_lr" in group:
            group["initial_lr"] = group["initial_lr"] * ratio
    if hasattr(scheduler, "_last_lr"):
        scheduler._last_lr = [group["lr"] for group in optimizers.param_groups]
    return stored


def uses_sharded_states(accelerator: Accelerator) -> bool:
    """FSDP and DeepSpeed save model states themselves; the save_pretrained hooks must then stay out of the way."""
    from accelerate.utils import DistributedType

    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


def register_pretrained_hooks(
    accelerator: Accelerator,
    subfolders: dict[type, str],
    ema_models: dict[str, tuple[Any, nn.Module] | None] | None = None,
    extra_save: Callable[[str], None] | None = None,
    extra_load: Callable[[str], None] | None = None,
) -> None:
    """Save/load hooks that write each prepared model as a `save_pretrained` folder inside the checkpoint.

    Args:
        subfolders (`dict[type, str]`): model class -> subfolder name; classes without `save_pretrained` are
            stored as `<subfolder>/model.safetensors`.
        ema_models (`dict[str, tuple[EMAModel, nn.Module]]`, *optional*): subfolder -> a
            `diffusers.training_utils.EMAModel` and the (unwrapped) model it averages, saved alongside with
            `vcq_hf.training_utils.ema.save_ema` (FSDP/DeepSpeed runs have no EMA: the scripts refuse it).
    """
    from .ema import load_ema, save_ema

    ema_models = {name: pair for name, pair in (ema_models or {}).items() if pair is not None}
    if uses_sharded_states(accelerator):
        return  # accelerate writes sharded model states itself

    def _subfolder(model: nn.Module) -> str:
        for cls, name in subfolders.items():
            if isinstance(model, cls):
                return name
        raise ValueError(f"No checkpoint subfolder registered for {type(model).__name__}.")

    def save_hook(models: list[nn.Module], weights: list[dict], folder: str) -> None:
        if accelerator.is_main_process:
            for model in models:
                model = accelerator.unwrap_model(model)
                save_module(model, os.path.join(folder, _subfolder(model)))
            for name, (ema, model) in ema_models.items():
                save_ema(ema, model, os.path.join(folder, name))
            if extra_save is not None:
                extra_save(folder)
        # Each model's weights were written above; stop accelerate from writing them a second time.
        while weights:
            weights.pop()

    def load_hook(models: list[nn.Module], folder: str) -> None:
        while models:
            model = accelerator.unwrap_model(models.pop())
            load_module(model, os.path.join(folder, _subfolder(model)))
        for name, (ema, model) in ema_models.items():
            load_ema(ema, model, os.path.join(folder, name))
        if extra_load is not None:
            extra_load(folder)

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def save_module(model: nn.Module, folder: str | os.PathLike) -> None:
    """`save_pretrained` when the module has it, else its state dict as `model.safetensors`."""
    if hasattr(model, "save_pretrained"):
        model.save_pretrained(folder)
        return
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(folder, "model.safetensors"))


def read_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """`safetensors.torch.load_file`, with a corrupt or truncated file reported as one line naming it."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as err:  # SafetensorError, OSError, ...: one message for every unreadable file
        raise CorruptCheckpointError(
            f"{path} cannot be read ({type(err).__name__}: {err}); the file is truncated or corrupt. "
            "Restore it, or resume from another checkpoint."
        ) from None


def load_module(model: nn.Module, folder: str | os.PathLike) -> None:
    """Load weights written by `save_module` into `model` in place.

    The checkpoint is checked against `model` first: a missing folder, weights of other shapes, missing or unexpected
    weights, or a `config.json` this version cannot read raise `IncompatibleCheckpointError`, one line naming the
    folder, the weights and config fields that differ, and what to do (the checkpoint is never changed). A model with
    `from_pretrained` (transformers / diffusers models) is then read by its own loader, which owns tied weights,
    sharded files and dtypes, and its state is copied in strictly (the load hook of diffusers'
    `train_unconditional.py` does the same); any other module reads its `model.safetensors` strictly. An unreadable
    file is a one-line error naming it.
    """
    folder = Path(folder)
    name = type(model).__name__
    if not folder.is_dir():
        raise IncompatibleCheckpointError(
            f"{folder.parent} has no {folder.name}/ folder for this run's {name}: the run that saved it had none "
            "(e.g. it ran without --use_ema or --use_discriminator). " + RESUME_ADVICE
        )
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CorruptCheckpointError(f"No .safetensors weights in {folder}; the checkpoint is incomplete.")
    found = {}
    for file in files:
        found.update(_safetensors_shapes(file))
    expected = {key: tuple(tensor.shape) for key, tensor in model.state_dict().items()}
    tied = set(getattr(model, "all_tied_weights_keys", None) or ())  # save_pretrained leaves tied copies out
    differences = _shape_differences(expected, found, optional=tied)
    config_problem = _config_differences(model, folder) if hasattr(model, "from_pretrained") else None
    if differences or (config_problem and config_problem.startswith("its config.json")):
        what = "; ".join(part for part in (config_problem, *differences) if part)
        raise IncompatibleCheckpointError(f"{folder} does not match this run's {name}: {what}. " + RESUME_ADVICE)
    if hasattr(model, "from_pretrained"):
        with explain_unreadable_weights(folder):
            loaded = type(model).from_pretrained(folder)
        model.load_state_dict(loaded.state_dict())
        return
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(read_safetensors(file))
    model.load_state_dict(state)


def _safetensors_shapes(file: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors header (no tensor data is read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    except Exception as err:  # SafetensorError, OSError, ...: one message for every unreadable file
        raise CorruptCheckpointError(
            f"{file} cannot be read ({type(err).__name__}: {err}); the file is truncated or corrupt. "
            "Restore it, or resume from another checkpoint."
        ) from None


def _listed(items: list[str], limit: int = 3) -> str:
    more = f"; +{len(items) - limit} more" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


def _shape_differences(
    expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]], optional: set[str] = frozenset()
) -> list[str]:
    """What differs between this run's weights (`expected`, name -> shape) and a checkpoint's (`found`), in words;
    an empty list when they match. Names in `optional` may be absent from the checkpoint."""
    shapes = [
        f"{key}: {list(found[key])} in the checkpoint, {list(expected[key])} in this run"
        for key in sorted(set(expected) & set(found))
        if tuple(found[key]) != tuple(expected[key])
    ]
    missing = sorted(set(expected) - set(found) - set(optional))
    unexpected = sorted(set(found) - set(expected))
    parts = []
    if shapes:
        parts.append(f"{len(shapes)} weight(s) differ in shape ({_listed(shapes)})")
    if missing:
        parts.append(f"{len(missing)} weight(s) of this run are missing ({_listed(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} weight(s) are not in this run's model ({_listed(unexpected)})")
    return parts


_CONFIG_BOOKKEEPING = frozenset(
    {"transformers_version", "architectures", "auto_map", "dtype", "torch_dtype", "_name_or_path", "_commit_hash"}
)


def _config_differences(model: nn.Module, folder: Path) -> str | None:
    """The config fields in which `folder/config.json` differs from `model.config`, in words ("its config.json ..."
    when this version cannot read it), or None when there is nothing to compare or nothing differs."""
    config, config_class = getattr(model, "config", None), getattr(model, "config_class", None)
    if config is None or config_class is None or not (folder / "config.json").is_file():
        return None
    try:
        saved = config_class.from_pretrained(folder)
    except Exception as err:  # an older or foreign format: validation errors, unknown fields, bad JSON
        reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
        return f"its config.json cannot be read by this version of vcq_hf ({type(err).__name__}: {reason})"
    ours, theirs = config.to_dict(), saved.to_dict()

    def shown(value: Any) -> str:
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."

    fields = [
        f"{key} = {shown(theirs.get(key))} in the checkpoint, {shown(ours.get(key))} in this run"
        for key in sorted((set(ours) | set(theirs)) - _CONFIG_BOOKKEEPING)
        if ours.get(key) != theirs.get(key)
    ]
    return f"config fields differ ({_listed(fields, limit=4)})" if fields else None


def check_optimizer_state(optimizers: list, checkpoint: str | os.PathLike) -> None:
    """Raise `IncompatibleCheckpointError` when an optimizer state loaded from `checkpoint` holds a tensor whose shape
    differs from its parameter's. torch's `load_state_dict` only compares the number of parameters per group, so such
    a state would otherwise fail at the first optimizer step with an anonymous size mismatch."""
    import torch

    for index, optimizer in enumerate(optimizers):
        optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps it
        file = "optimizer.bin" if index == 0 else f"optimizer_{index}.bin"
        for group_index, group in enumerate(optimizer.param_groups):
            for position, parameter in enumerate(group["params"]):
                for key, value in optimizer.state.get(parameter, {}).items():
                    if torch.is_tensor(value) and value.dim() > 0 and value.shape != parameter.shape:
                        raise IncompatibleCheckpointError(
                            f"{Path(checkpoint) / file} does not match this run's optimizer: the state {key!r} of "
                            f"parameter {position} (group {group_index}) has shape {list(value.shape)}, the "
                            f"parameter {list(parameter.shape)}. " + RESUME_ADVICE
                        )


def weights_fingerprint(module: nn.Module) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of `module`'s state dict (sorted by name), as
    "sha256:<hex>": the same weights give the same fingerprint whatever file they were loaded from."""
    import hashlib

    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"sha256:{digest.hexdigest()}"


def read_marker(path: str | os.PathLike) -> dict[str, Any]:
    """The completion marker of a checkpoint ({} when absent)."""
    marker = Path(path) / CHECKPOINT_MARKER
    return json.loads(marker.read_text()) if marker.is_file() else {}
