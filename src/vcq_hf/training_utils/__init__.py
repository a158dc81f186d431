"""Training utilities of vcq_hf, promoted from `examples/` (as `diffusers.training_utils` serves diffusers' examples).

- `vcq_hf.training_utils.files`: atomic writes, marker-checked folder replacement and folder locks. It owns what
  may be written, replaced or deleted on disk; it needs only the standard library.
"""
