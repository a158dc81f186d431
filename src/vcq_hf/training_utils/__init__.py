"""Training utilities of vcq_hf, promoted from `examples/` (as `diffusers.training_utils` serves diffusers' examples).

- `vcq_hf.training_utils.files`: atomic writes, marker-checked folder replacement and folder locks. It owns what may be
  written, replaced or deleted on disk; it needs only the standard library (and safetensors to name a corrupt file).
- `vcq_hf.training_utils.checkpointing`: atomic training checkpoints, rotation, resume (`latest` skips incomplete or
  poisoned ones), the loss / gradient / weight finiteness checks and `save_pretrained` state hooks.
- `vcq_hf.training_utils.ema`: diffusers' `EMAModel` saved and loaded as a `save_pretrained` folder.
- `vcq_hf.training_utils.scripts`: what the example scripts share, taking their `argparse.Namespace`.
- `vcq_hf.training_utils.sampling`: what the sampling scripts (`sample.py`, `evaluate_pipeline.py`) share.

Submodules are imported on use, so `import vcq_hf.training_utils.files` stays light.
"""
