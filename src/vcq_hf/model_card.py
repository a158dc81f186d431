"""The one model-card template of vcq_hf, used by the training scripts (always written to `output_dir`) and the docs.

A card is a `README.md` with Hub YAML metadata (library_name, pipeline_tag, tags, datasets, metrics, license) and
sections: model summary, configuration (T, K_min, K_max, schedule, parameter counts, entropy-cliff position), how to
load and sample, training recipe (the exact command and hyper-parameters) and results.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from .schedules import cliff_position


MODEL_CARD_KINDS: tuple[str, ...] = ("tokenizer", "pipeline")

# Built-in data set names -> Hub dataset ids of the same data (for the `datasets` metadata field).
_HUB_DATASETS = {"fashion-mnist": "zalando-datasets/fashion_mnist"}
_KNOWN_METRICS = ("fid", "inception_score", "precision", "recall", "psnr", "accuracy")
_PAPER = "Variable Codebook Size Quantization (VCQ) for autoregressive image generation"


def _format_sizes(sizes: Sequence[int]) -> str:
    sizes = list(sizes)
    if len(sizes) <= 12:
        return ", ".join(str(s) for s in sizes)
    return f"{', '.join(str(s) for s in sizes[:6])}, ..., {', '.join(str(s) for s in sizes[-3:])}"


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return _format_sizes(value) if all(isinstance(v, int) for v in value) else ", ".join(map(str, value))
    return str(value)


def _table(rows: Mapping[str, Any]) -> str:
    lines = ["| | |", "| --- | --- |"]
    lines += [f"| {key} | {_format_value(value)} |" for key, value in rows.items() if value is not None]
    return "\n".join(lines)


def _schedule_rows(vq_config: Any, num_train_images: int | None) -> dict[str, Any]:
    sizes = list(vq_config.codebook_sizes)
    rows = {
        "image size": f"{vq_config.image_size}x{vq_config.image_size}",
        "tokens per image (T)": len(sizes),
        "K_min (first position)": sizes[0],
        "K_max (codebook size)": sizes[-1],
        "schedule": getattr(vq_config, "schedule", None),
        "ramp length": getattr(vq_config, "ramp_length", None),
        "codebook sizes K_t": sizes,
        "codebook dimension": getattr(vq_config, "codebook_dim", None),
    }
    if num_train_images:
        position = cliff_position(num_train_images, sizes)
        rows["entropy-cliff position (1-based t with sum log2 K_i >= log2 N)"] = (
            f"{position} (N = {num_train_images:,})"
            if position is not None
            else f"beyond T (N = {num_train_images:,})"
        )
    return rows


def build_model_card(
    kind: str,
    *,
    vq_config: Any,
    ar_config: Any | None = None,
    num_parameters: Mapping[str, int] | None = None,
    dataset: str | None = None,
    num_train_images: int | None = None,
    id2label: Mapping[int | str, str] | None = None,
    training_args: Mapping[str, Any] | None = None,
    command: str | None = None,
    results: Mapping[str, Any] | None = None,
    code_usage: Mapping[str, Any] | None = None,
    sample_image: str | None = None,
    repo_id: str | None = None,
    license: str = "apache-2.0",
    tags: Sequence[str] = (),
) -> ModelCard:
    """Build the model card of a trained VCQ tokenizer or VCQ pipeline.

    Args:
        kind (`str`): `"tokenizer"` (a `VCQVQModel` + `VCQImageProcessor` folder) or `"pipeline"` (a `VCQPipeline`
            folder with `vq_model` and `transformer`).
        vq_config (`VCQVQConfig`): the tokenizer config (schedule fields are read from it).
        ar_config (`VCQConfig`, *optional*): the AR prior config; required for `"pipeline"`.
        num_parameters (`Mapping[str, int]`, *optional*): parameter count per component.
        dataset (`str`, *optional*): the training data set (a built-in name, a Hub id or a folder).
        num_train_images (`int`, *optional*): size of the training set, for the entropy-cliff position.
        id2label (`Mapping`, *optional*): class names of a class-conditional pipeline.
        training_args (`Mapping[str, Any]`, *optional*): hyper-parameters shown in the training recipe.
        command (`str`, *optional*): the exact command that produced the model.
        results (`Mapping[str, Any]`, *optional*): final metrics and losses.
        code_usage (`Mapping[str, Any]`, *optional*): per-position code-usage statistics.
        sample_image (`str`, *optional*): path of a sample grid relative to the card.
        repo_id (`str`, *optional*): Hub id used in the loading snippet (defaults to a local path).
        license (`str`, *optional*, defaults to `"apache-2.0"`): licence of the weights.
        tags (`Sequence[str]`, *optional*): extra Hub tags.

    Returns:
        `huggingface_hub.ModelCard`.
    """
    if kind not in MODEL_CARD_KINDS:
        raise ValueError(f"kind = {kind!r} is not a model-card kind; expected one of {MODEL_CARD_KINDS}.")
    if kind == "pipeline" and ar_config is None:
        raise ValueError("A pipeline model card needs ar_config (the VCQConfig of the transformer).")
    results = dict(results or {})
    metrics = [name for name in _KNOWN_METRICS if name in results]
    hub_dataset = _HUB_DATASETS.get(
        dataset, dataset if dataset and "/" in dataset and not os.path.exists(dataset) else None
    )
    schedule = getattr(vq_config, "schedule", "custom")
    card_data = ModelCardData(
        library_name="diffusers" if kind == "pipeline" else "transformers",
        pipeline_tag="unconditional-image-generation" if kind == "pipeline" else "image-feature-extraction",
        license=license,
        datasets=[hub_dataset] if hub_dataset else None,
        metrics=metrics or None,
        tags=[
            "vcq_hf",
            "vcq",
            "image-tokenizer" if kind == "tokenizer" else "autoregressive-image-generation",
            f"schedule-{schedule}",
            *tags,
        ],
    )
    where = repo_id or "path/to/this/folder"
    title = "VCQ image tokenizer" if kind == "tokenizer" else "VCQ class-conditional image generation pipeline"
    sizes = list(vq_config.codebook_sizes)

    parts = [f"# {title}", ""]
    if kind == "tokenizer":
        parts.append(
            f"A 1D ViT image tokenizer trained with {_PAPER}: each {vq_config.image_size}x{vq_config.image_size} "
            f"image becomes T = {len(sizes)} discrete codes, and position t chooses among the first K_t entries of "
            f"one shared codebook of K_max = {sizes[-1]} entries (K_t grows from {sizes[0]} to {sizes[-1]}, "
            f"`{schedule}` schedule)."
        )
    else:
        num_classes = getattr(ar_config, "num_classes", None)
        parts.append(
            f"A class-conditional autoregressive image generator trained with {_PAPER}: a Llama-style prior "
            f"(`VCQForCausalLM`) over the T = {len(sizes)} codes of a VCQ tokenizer (`VCQVQModel`), sampled with "
            f"classifier-free guidance by `VCQPipeline`. {num_classes} classes; K_t grows from {sizes[0]} to "
            f"{sizes[-1]} (`{schedule}` schedule)."
        )
    if dataset:
        parts.append(f"\nTrained on: `{dataset}`" + (f" ({num_train_images:,} images)." if num_train_images else "."))
    if sample_image:
        parts += ["", f"![samples]({sample_image})"]

    parts += ["", "## Configuration", "", _table(_schedule_rows(vq_config, num_train_images))]
    if ar_config is not None:
        parts += [
            "",
            _table(
                {
                    "prior hidden size": getattr(ar_config, "hidden_size", None),
                    "prior layers": getattr(ar_config, "num_hidden_layers", None),
                    "prior attention heads": getattr(ar_config, "num_attention_heads", None),
                    "classes": getattr(ar_config, "num_classes", None),
                    "class dropout (for CFG)": getattr(ar_config, "class_dropout_prob", None),
                }
            ),
        ]
    if num_parameters:
        parts += ["", _table({f"parameters: {name}": f"{count:,}" for name, count in num_parameters.items()})]
    if id2label:
        labels = ", ".join(f"{k}: {v}" for k, v in sorted(id2label.items(), key=lambda kv: int(kv[0])))
        parts += ["", f"Classes: {labels}."]

    parts += ["", "## How to use", "", "```python"]
    if kind == "tokenizer":
        parts += [
            "from vcq_hf import VCQImageProcessor, VCQVQModel",
            "",
            f'model = VCQVQModel.from_pretrained("{where}").eval()',
            f'processor = VCQImageProcessor.from_pretrained("{where}")',
            'pixel_values = processor(images, return_tensors="pt").pixel_values  # (B, 3, H, W) in [-1, 1]',
            "codes = model.encode(pixel_values).codes  # (B, T), codes[:, t] < K_t",
            'reconstructions = processor.postprocess(model.decode(codes).sample, output_type="pil")',
        ]
    else:
        first_label = next(iter(id2label.values())) if id2label else None
        labels_arg = f'pipe.get_label_ids(["{first_label}"])' if first_label else "[0]"
        parts += [
            "import torch",
            "from vcq_hf import VCQPipeline",
            "",
            f'pipe = VCQPipeline.from_pretrained("{where}")',
            f"images = pipe(class_labels={labels_arg}, guidance_scale=2.0, "
            "generator=torch.Generator().manual_seed(0)).images",
            'images[0].save("sample.png")',
        ]
    parts += ["```"]
    if kind == "pipeline":
        parts += ["", "Or from the command line: `vcq generate --model " + where + " --output grid.png`."]

    if command or training_args:
        parts += ["", "## Training recipe", ""]
        if command:
            parts += ["```bash", command, "```", ""]
        if training_args:
            keep = {k: v for k, v in training_args.items() if v is not None and k not in ("hub_token",)}
            parts.append("<details><summary>All hyper-parameters</summary>\n")
            parts.append(_table(keep))
            parts.append("\n</details>")

    if results or code_usage:
        parts += ["", "## Results", ""]
        if results:
            parts.append(_table(results))
        if code_usage:
            fractions = code_usage.get("usage_fraction_per_position")
            parts += [
                "",
                f"Code usage over {code_usage.get('num_images', '?')} training images "
                "(distinct codes used at position t / K_t):",
                "",
                "```",
                " ".join(f"{f:.2f}" for f in fractions) if fractions else str(dict(code_usage)),
                "```",
            ]

    parts += [
        "",
        "## Limitations",
        "",
        "Samples reflect the training data only; small demo models give low-resolution, imperfect images.",
    ]
    content = f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(parts) + "\n"
    return ModelCard(content)


def save_model_card(output_dir: str | os.PathLike, **kwargs: Any) -> Path:
    """Build a card with `build_model_card(**kwargs)` and write it to `output_dir/README.md`. Returns the path."""
    card = build_model_card(**kwargs)
    path = Path(output_dir) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    card.save(str(path))
    return path


__all__ = ["MODEL_CARD_KINDS", "build_model_card", "save_model_card"]
