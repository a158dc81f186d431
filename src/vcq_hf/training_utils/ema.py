"""Exponential moving average of the weights with diffusers' `EMAModel`, saved as a `save_pretrained` folder.

`EMAModel` keeps shadow copies of the parameters (the decay warms up as `min(decay, (1 + n) / (10 + n))` after
`update_after_step` steps); `store` / `copy_to` / `restore` swap them into the live model for sampling and for the
final save. Its own `save_pretrained` needs a diffusers `ConfigMixin` model class, so a checkpoint holds the average
the way this package stores every model: the live model with the shadow weights swapped in, saved with
`save_pretrained` (safetensors, never a pickle), next to `ema_state.json` (step and decay).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .files import atomic_write_json


if TYPE_CHECKING:
    from diffusers.training_utils import EMAModel
    from torch import nn

EMA_STATE_FILENAME = "ema_state.json"

__all__ = ["EMA_STATE_FILENAME", "create_ema", "load_ema", "save_ema"]


def create_ema(model: nn.Module, max_decay: float = 0.9999, update_after_step: int = 0) -> EMAModel:
    """`diffusers.training_utils.EMAModel` over `model`'s parameters (shadow copies on the parameters' device)."""
    from diffusers.training_utils import EMAModel

    return EMAModel(model.parameters(), decay=max_decay, update_after_step=update_after_step)


def save_ema(ema: EMAModel, model: nn.Module, folder: str | os.PathLike) -> None:
    """Write the average as `model`'s `save_pretrained` folder plus `ema_state.json`; `model` is left unchanged."""
    from .checkpointing import save_module

    parameters = list(model.parameters())
    ema.store(parameters)
    ema.copy_to(parameters)
    try:
        save_module(model, folder)
    finally:
        ema.restore(parameters)
    atomic_write_json(
        Path(folder) / EMA_STATE_FILENAME, {"optimization_step": ema.optimization_step, "decay": ema.decay}
    )


def load_ema(ema: EMAModel, model: nn.Module, folder: str | os.PathLike) -> None:
    """Load an average written by `save_ema` into `ema` (`model` supplies the layout and is left unchanged).

    Raises:
        `IncompatibleCheckpointError`: `folder` is missing, holds an average of another model or config, or its
            `ema_state.json` is unreadable; one line naming the folder and what differs (see `load_module`).
    """
    import torch

    from .checkpointing import RESUME_ADVICE, IncompatibleCheckpointError, load_module

    parameters = list(model.parameters())
    ema.store(parameters)
    try:
        load_module(model, folder)
        with torch.no_grad():
            for shadow, parameter in zip(ema.shadow_params, parameters):
                shadow.copy_(parameter.detach().to(shadow.device, shadow.dtype))
    finally:
        ema.restore(parameters)
    state_file = Path(folder) / EMA_STATE_FILENAME
    try:
        ema.optimization_step = int(json.loads(state_file.read_text())["optimization_step"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise IncompatibleCheckpointError(
            f"{state_file} cannot be used ({type(err).__name__}: {err}): the EMA folder was not written by "
            "vcq_hf.training_utils.ema.save_ema. " + RESUME_ADVICE
        ) from None
