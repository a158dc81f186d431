"""The one model-card builder of vcq_hf: training scripts (always written to `output_dir`), `VCQPipeline.save_pretrained`
/ `push_to_hub`, and the committed cards in `model_cards/` all render `templates/model_card.md` through
`huggingface_hub.ModelCard.from_template`.

A card is a `README.md` with Hub YAML metadata (library_name, pipeline_tag, tags, datasets, metrics, license and, for
a checkpoint whose figures were measured, `model-index` eval results) and sections: summary, configuration (T, K_min,
K_max, schedule, parameter counts, entropy-cliff position), install, how to load and sample (with vcq_hf, and through
the generic `DiffusionPipeline` / Auto classes with `trust_remote_code=True` without it), training recipe, results,
limitations and the paper's citation.

Hub metadata, by kind of folder: a pipeline folder is a diffusers pipeline (`library_name: diffusers`); it maps a class
name (a string, `pipe("golden retriever")`) to an image, the closest Hub task being `text-to-image`, and carries the
`class-conditional-image-generation` tag. A tokenizer folder is a transformers model (`library_name: transformers`,
`image-feature-extraction`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..schedules import cliff_position


MODEL_CARD_KINDS: tuple[str, ...] = ("tokenizer", "pipeline")
TEMPLATE_PATH: Path = Path(__file__).resolve().parent / "templates" / "model_card.md"
LIBRARY_NAMES: dict[str, str] = {"pipeline": "diffusers", "tokenizer": "transformers"}
PIPELINE_TAGS: dict[str, str] = {"pipeline": "text-to-image", "tokenizer": "image-feature-extraction"}
KIND_TAGS: dict[str, tuple[str, ...]] = {
    "pipeline": ("class-conditional-image-generation", "autoregressive-image-generation"),
    "tokenizer": ("image-tokenizer",),
}

# Built-in data set names -> Hub dataset ids of the same data (for the `datasets` metadata field).
_HUB_DATASETS = {"fashion-mnist": "zalando-datasets/fashion_mnist"}
_KNOWN_METRICS = ("fid", "inception_score", "precision", "recall", "psnr", "accuracy")
_PAPER = "Variable Codebook Size Quantization (VCQ) for autoregressive image generation"
PAPER_URL = "https://arxiv.org/abs/2605.06207"
CITATION = """If you use this model, please cite the VCQ paper ([arXiv 2605.06207](https://arxiv.org/abs/2605.06207)):

```bibtex
@article{zheng2026taming,
  title   = {Taming the Entropy Cliff: Variable Codebook Size Quantization for Autoregressive Visual Generation},
  author  = {Zheng, Bowen and Luo, Weijian and Yang, Guang and Zhang, Colin and Hu, Tianyang},
  journal = {arXiv preprint arXiv:2605.06207},
  year    = {2026}
}
```

and the software (see `CITATION.cff` in the vcq_hf repository)."""
INSTALL = """With vcq_hf (its models, pipeline, `vcq` command and training scripts), from a checkout of its repository:

```bash
pip install torch && pip install -e .
```

Without vcq_hf, the folder's own code runs through the generic classes (`trust_remote_code=True`); that needs only

```bash
pip install torch transformers diffusers
```"""


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


def _tokenizer_rows(vq_config: Any) -> dict[str, Any]:
    def layers(prefix: str) -> str | None:
        hidden = getattr(vq_config, f"{prefix}_hidden_size", None)
        if hidden is None:
            return None
        num_layers = getattr(vq_config, f"{prefix}_num_layers", None)
        heads = getattr(vq_config, f"{prefix}_num_heads", None)
        return f"width {hidden}, {num_layers} layers, {heads} heads"

    patch = getattr(vq_config, "patch_size", None)
    return {
        "tokenizer patch size": f"{patch}x{patch}" if patch else None,
        "tokenizer encoder (ViT)": layers("encoder"),
        "tokenizer decoder (ViT)": layers("decoder"),
    }


def _default_usage(kind: str, where: str, id2label: Mapping[int | str, str] | None) -> list[str]:
    lines = ["```python"]
    if kind == "tokenizer":
        lines += [
            "from vcq_hf import VCQImageProcessor, VCQVQModel",
            "",
            f'model = VCQVQModel.from_pretrained("{where}").eval()',
            f'processor = VCQImageProcessor.from_pretrained("{where}")',
            'pixel_values = processor(images, return_tensors="pt").pixel_values  # (B, 3, H, W) in [-1, 1]',
            "codes = model.encode(pixel_values).codes  # (B, T), codes[:, t] < K_t",
            'reconstructions = processor.postprocess(model.decode(codes).sample, output_type="pil")',
            "```",
            "",
            "Without vcq_hf, through the Auto classes and the code saved with the model:",
            "",
            "```python",
            "from transformers import AutoImageProcessor, AutoModel",
            "",
            f'model = AutoModel.from_pretrained("{where}", trust_remote_code=True).eval()',
            f'processor = AutoImageProcessor.from_pretrained("{where}", trust_remote_code=True)',
            "```",
        ]
        return lines
    first_label = next(iter(id2label.values())) if id2label else None
    labels_arg = f'pipe.get_label_ids(["{first_label}"])' if first_label else "[0]"
    lines += [
        "import torch",
        "from vcq_hf import VCQPipeline",
        "",
        f'pipe = VCQPipeline.from_pretrained("{where}")',
        f"images = pipe(class_labels={labels_arg}, guidance_scale=2.0, "
        "generator=torch.Generator().manual_seed(0)).images",
        'images[0].save("sample.png")',
        "```",
        "",
        "Or from the command line: `vcq generate --model " + where + " --output grid.png`.",
        "",
        remote_code_usage(where, first_label),
    ]
    return lines


def remote_code_usage(where: str, label: str | None = None) -> str:
    """Markdown: load a saved pipeline with diffusers' generic `DiffusionPipeline`, without vcq_hf."""
    label = repr(label) if label else "0"
    return "\n".join(
        [
            "Without vcq_hf, with diffusers' generic entry point and the code saved in the folder:",
            "",
            "```python",
            "import torch",
            "from diffusers import DiffusionPipeline",
            "",
            f'pipe = DiffusionPipeline.from_pretrained("{where}", trust_remote_code=True)',
            f"image = pipe(class_labels={label}, guidance_scale=2.0, generator=torch.manual_seed(0)).images[0]",
            "```",
        ]
    )


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
    title: str | None = None,
    summary: str | None = None,
    library_name: str | None = None,
    pipeline_tag: str | None = None,
    hub_datasets: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    usage: str | None = None,
    reported_results: Mapping[str, Any] | None = None,
    reported_results_source: str | None = None,
    extra_sections: Mapping[str, str] | None = None,
    limitations: str | None = None,
    eval_results: Sequence[EvalResult] | None = None,
    model_name: str | None = None,
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
        title (`str`, *optional*): the card's heading (default: from `kind`).
        summary (`str`, *optional*): Markdown replacing the generated one-paragraph summary.
        library_name (`str`, *optional*): Hub `library_name` (default: `LIBRARY_NAMES[kind]`).
        pipeline_tag (`str`, *optional*): Hub `pipeline_tag` (default: `PIPELINE_TAGS[kind]`).
        hub_datasets (`Sequence[str]`, *optional*): Hub `datasets` ids (default: derived from `dataset`).
        metrics (`Sequence[str]`, *optional*): Hub `metrics` (default: the known metric names among `results`).
        usage (`str`, *optional*): Markdown replacing the generated "How to use" body.
        reported_results (`Mapping[str, Any]`, *optional*): figures reported by the paper, shown in their own table
            under "Reported by the paper, not trained by this project", never mixed with `results`.
        reported_results_source (`str`, *optional*): a sentence shown under that table (the source and setting).
        extra_sections (`Mapping[str, str]`, *optional*): section title -> Markdown body, placed before
            "Limitations".
        limitations (`str`, *optional*): Markdown replacing the default limitations paragraph.
        eval_results (`Sequence[huggingface_hub.EvalResult]`, *optional*): measured results of this checkpoint,
            written to the card's `model-index` metadata (never the paper's figures).
        model_name (`str`, *optional*): the `model-index` name (default: `repo_id`, else the title).

    Returns:
        `huggingface_hub.ModelCard`.
    """
    if kind not in MODEL_CARD_KINDS:
        raise ValueError(f"kind = {kind!r} is not a model-card kind; expected one of {MODEL_CARD_KINDS}.")
    if kind == "pipeline" and ar_config is None:
        raise ValueError("A pipeline model card needs ar_config (the VCQConfig of the transformer).")
    results = dict(results or {})
    if metrics is None:
        metrics = [name for name in _KNOWN_METRICS if name in results]
    if hub_datasets is None:
        hub_dataset = _HUB_DATASETS.get(
            dataset, dataset if dataset and "/" in dataset and not os.path.exists(dataset) else None
        )
        hub_datasets = [hub_dataset] if hub_dataset else None
    schedule = getattr(vq_config, "schedule", "custom")
    if title is None:
        title = "VCQ image tokenizer" if kind == "tokenizer" else "VCQ class-conditional image generation pipeline"
    card_data = ModelCardData(
        library_name=library_name or LIBRARY_NAMES[kind],
        pipeline_tag=pipeline_tag or PIPELINE_TAGS[kind],
        license=license,
        datasets=list(hub_datasets) if hub_datasets else None,
        metrics=list(metrics) or None,
        tags=list(dict.fromkeys(["vcq_hf", "vcq", *KIND_TAGS[kind], f"schedule-{schedule}", *tags])),
        model_name=(model_name or repo_id or title) if eval_results else None,
        eval_results=list(eval_results) if eval_results else None,
    )
    where = repo_id or "path/to/this/folder"
    sizes = list(vq_config.codebook_sizes)

    if summary is None and kind == "tokenizer":
        summary = (
            f"A 1D ViT image tokenizer trained with {_PAPER} ([paper]({PAPER_URL})): each {vq_config.image_size}x"
            f"{vq_config.image_size} image becomes T = {len(sizes)} discrete codes, and position t chooses among the "
            f"first K_t entries of one shared codebook of K_max = {sizes[-1]} entries (K_t grows from {sizes[0]} to "
            f"{sizes[-1]}, `{schedule}` schedule)."
        )
    elif summary is None:
        summary = (
            f"A class-conditional autoregressive image generator trained with {_PAPER} ([paper]({PAPER_URL})): a "
            f"Llama-style prior (`VCQForCausalLM`) over the T = {len(sizes)} codes of a VCQ tokenizer (`VCQVQModel`), "
            f"sampled with classifier-free guidance by `VCQPipeline`. {getattr(ar_config, 'num_classes', None)} "
            f"classes; K_t grows from {sizes[0]} to {sizes[-1]} (`{schedule}` schedule)."
        )
    trained_on = None
    if dataset:
        trained_on = f"Trained on: `{dataset}`" + (f" ({num_train_images:,} images)." if num_train_images else ".")

    configuration = [_table(_schedule_rows(vq_config, num_train_images)), "", _table(_tokenizer_rows(vq_config))]
    if ar_config is not None:
        configuration += [
            "",
            _table(
                {
                    "prior hidden size": getattr(ar_config, "hidden_size", None),
                    "prior layers": getattr(ar_config, "num_hidden_layers", None),
                    "prior attention heads": getattr(ar_config, "num_attention_heads", None),
                    "prior key/value heads": getattr(ar_config, "num_key_value_heads", None),
                    "prior MLP (SwiGLU) width": getattr(ar_config, "intermediate_size", None),
                    "prior vocabulary (K_max codes + classes + null class)": getattr(ar_config, "vocab_size", None),
                    "prior sequence length (class token + T)": getattr(ar_config, "max_position_embeddings", None),
                    "classes": getattr(ar_config, "num_classes", None),
                    "class dropout (for CFG)": getattr(ar_config, "class_dropout_prob", None),
                }
            ),
        ]
    if num_parameters:
        configuration += ["", _table({f"parameters: {name}": f"{count:,}" for name, count in num_parameters.items()})]
    if id2label:
        labels = ", ".join(f"{k}: {v}" for k, v in sorted(id2label.items(), key=lambda kv: int(kv[0])))
        configuration += ["", f"Classes: {labels}."]

    recipe = []
    if command:
        recipe += ["```bash", command, "```", ""]
    if training_args:
        keep = {k: v for k, v in training_args.items() if v is not None and k not in ("hub_token",)}
        recipe += ["<details><summary>All hyper-parameters</summary>\n", _table(keep), "\n</details>"]

    results_parts = []
    if results:
        results_parts.append(_table(results))
    if code_usage:
        fractions = code_usage.get("usage_fraction_per_position")
        results_parts += [
            "",
            f"Code usage over {code_usage.get('num_images', '?')} training images "
            "(distinct codes used at position t / K_t):",
            "",
            "```",
            " ".join(f"{f:.2f}" for f in fractions) if fractions else str(dict(code_usage)),
            "```",
        ]
    if reported_results:
        results_parts += (["", ""] if results or code_usage else []) + [
            "### Reported by the paper, not trained by this project",
            "",
        ]
        if reported_results_source:
            results_parts += [reported_results_source.strip(), ""]
        results_parts.append(_table(reported_results))

    card = ModelCard.from_template(
        card_data,
        template_path=TEMPLATE_PATH,
        title=title,
        summary=summary.strip(),
        trained_on=trained_on,
        sample_image=sample_image,
        configuration="\n".join(configuration).strip(),
        install=INSTALL,
        usage=usage.strip() if usage is not None else "\n".join(_default_usage(kind, where, id2label)),
        recipe="\n".join(recipe).strip(),
        results="\n".join(results_parts).strip(),
        extra_sections=[(name, body.strip()) for name, body in (extra_sections or {}).items()],
        limitations=limitations.strip()
        if limitations
        else "Samples reflect the training data only; small demo models give low-resolution, imperfect images.",
        citation=CITATION,
    )
    return card


def save_model_card(output_dir: str | os.PathLike, **kwargs: Any) -> Path:
    """Build a card with `build_model_card(**kwargs)` and write it to `output_dir/README.md`. Returns the path."""
    card = build_model_card(**kwargs)
    path = Path(output_dir) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    card.save(str(path))
    return path


# ----------------------------------------------------------------------------------------------------------------------
# The committed cards in model_cards/: one per ImageNet AR preset, one for the bundled demo checkpoint.
# `python -m vcq_hf.hub.model_card --output_dir model_cards` renders them; `--check` fails when a committed card is stale.
# ----------------------------------------------------------------------------------------------------------------------

AR_PRESETS: tuple[str, ...] = ("vcq-b", "vcq-l", "vcq-xl", "vcq-684m")
IMAGENET_TOKENIZER_PRESET = "imagenet-256"
IMAGENET_HUB_DATASET = "ILSVRC/imagenet-1k"
IMAGENET_TRAIN_IMAGES = 1_281_167
DEMO_DIR: Path = Path(__file__).resolve().parents[1] / "demo"
DEMO_CARD_NAME = "vcq-demo-fmnist"
# The small-scale study's results in a source checkout (benchmarks/reproduce_small.py --report), relative to the
# working directory of `python -m vcq_hf.hub.model_card` (the repository root); the package never reads docs/ itself.
REPRODUCTION_RESULTS = Path("docs") / "reproduction" / "results.json"

# The ImageNet recipe of docs/imagenet.md: tokenizer steps x global batch, and AR epochs over the flip-augmented
# code set (2 x 1,281,167 rows; 150 epochs = 300 passes over the ImageNet-size set, LlamaGen's budget).
TOKENIZER_TRAIN_STEPS = 500_000
TOKENIZER_GLOBAL_BATCH = 256
AR_EPOCHS_OVER_FLIPPED_CODES = 150
NUM_EVAL_SAMPLES = 50_000
# Assumptions of the compute estimates: dense bf16 peak per GPU and the model-FLOP utilisation reached.
GPU_PEAK_BF16_FLOPS: dict[str, float] = {"A100-SXM": 312e12, "H100-SXM": 989e12}
ASSUMED_MFU = 0.40
# VGG-16 (the perceptual loss) forward FLOPs for one 224x224 image (15.47 GMACs).
VGG16_FORWARD_FLOPS_224 = 30.9e9

PAPER_REPORTED: dict[str, str] = {
    "gFID, ImageNet 256x256, without CFG: uniform codebook -> VCQ": "27.98 -> 14.80",
    "gFID, ImageNet 256x256, AR model of 684M parameters": "1.71",
    "linear-probe top-1 on the first 10 tokens: VCQ vs uniform codebook": "43.8% vs 27.1%",
}
PAPER_SOURCE = (
    "These figures are copied from the paper (ImageNet-1k, 256x256, 50,000 samples for gFID). They were **not "
    "reproduced by this project**: no GPU was available to it and no model of this size was trained here."
)

_PRESET_NOTES: dict[str, str] = {
    "vcq-b": "LlamaGen GPT-B size (hidden 768, 12 layers)",
    "vcq-l": "LlamaGen GPT-L size (hidden 1024, 24 layers)",
    "vcq-xl": "LlamaGen GPT-XL size (hidden 1280, 36 layers)",
    "vcq-684m": "the paper's AR size, 684M parameters (GPT-XL width, 32 layers, SwiGLU width 3504)",
}
# How each preset is trained in docs/imagenet.md: (accelerate config, launch flags, per-device batch, learning rate).
_PRESET_LAUNCH: dict[str, tuple[str, str, int, str]] = {
    "vcq-b": ("multi_gpu.yaml", "", 32, "1e-4"),
    "vcq-l": (
        "multi_node.yaml",
        " --num_machines 4 --num_processes 32 --machine_rank $NODE_RANK --main_process_ip $MASTER_ADDR",
        8,
        "1e-4",
    ),
    "vcq-xl": ("fsdp.yaml", "", 32, "1e-4"),
    "vcq-684m": ("fsdp.yaml", "", 32, "1e-4"),
}


def count_parameters_on_meta(model_class: type, config: Any) -> dict[str, int]:
    """Parameter counts of `model_class(config)` built on the meta device (no memory, no initialisation cost).

    Returns:
        `dict` with `"total"` and `"input_embedding"` (the embedding table, 0 when the model has none).
    """
    import torch

    with torch.device("meta"):
        model = model_class(config)
    total = model.num_parameters()
    try:
        embedding = model.get_input_embeddings()
    except (AttributeError, NotImplementedError):  # e.g. VCQVQModel: no token embedding
        embedding = None
    embedding_count = embedding.weight.numel() if isinstance(getattr(embedding, "weight", None), torch.Tensor) else 0
    return {"total": int(total), "input_embedding": int(embedding_count)}


def imagenet_configs(preset: str) -> tuple[Any, Any]:
    """The tokenizer config (`VCQVQConfig` "imagenet-256") and AR config (`VCQConfig` preset) of an ImageNet preset."""
    from ..configuration_vcq import VCQConfig
    from ..configuration_vcq_vq import VCQVQConfig

    if preset not in AR_PRESETS:
        raise ValueError(f"preset = {preset!r} is not an ImageNet AR preset; expected one of {AR_PRESETS}.")
    vq_config = VCQVQConfig.from_preset(IMAGENET_TOKENIZER_PRESET)
    return vq_config, VCQConfig.from_vq_config(vq_config, preset=preset)


def pixel_head_forward_flops(vq_config: Any) -> int:
    """Forward FLOPs for one image of the tokenizer decoder's pixel head, from the config alone: 2 FLOPs per
    multiply-accumulate of its matmuls and convolutions; biases, GELUs and residual adds are left out, as
    `torch.utils.flop_counter.FlopCounterMode` counts. With N = (H / p)^2 patches, h = `decoder_hidden_size`,
    p = `patch_size`, c = `decoder_conv_channels`, L = `decoder_conv_layers`, C = `num_channels`:

        in projection  `proj_out`, per patch:          2 * N * h * p^2 * c
        unpatchify                                      0 (a reshape to a c x H x W map)
        L residual blocks of two 3x3 convs, c -> c:    L * 2 * (2 * H * W * 9 * c * c)
        out projection `conv_out`, 3x3, c -> C:        2 * H * W * 9 * c * C

    `decoder_type="linear"` (v1) has only the in projection, with c = C. The convolutions run at full resolution,
    per pixel rather than per token, so "6 x parameters x tokens" misses almost all of their cost.

    Examples:

        >>> from vcq_hf.configuration_vcq_vq import VCQVQConfig
        >>> # tiny: N = 9, h = 30, p = 4, c = 6, L = 1, C = 3, H = W = 12
        >>> pixel_head_forward_flops(VCQVQConfig.from_preset("tiny"))  # 51,840 + 186,624 + 46,656
        285120
    """
    patches = (vq_config.image_size // vq_config.patch_size) ** 2
    pixels = vq_config.image_size**2
    if vq_config.decoder_type != "conv":
        return 2 * patches * vq_config.decoder_hidden_size * vq_config.patch_size**2 * vq_config.num_channels
    channels = vq_config.decoder_conv_channels
    projection = 2 * patches * vq_config.decoder_hidden_size * vq_config.patch_size**2 * channels
    blocks = vq_config.decoder_conv_layers * 2 * (2 * pixels * 9 * channels * channels)
    out = 2 * pixels * 9 * channels * vq_config.num_channels
    return projection + blocks + out


def pixel_head_num_parameters(vq_config: Any) -> int:
    """Parameters of the decoder's pixel head (`proj_out`, and for `"conv"` the conv blocks and `conv_out`), with
    the symbols of `pixel_head_forward_flops`: (h + 1) * p^2 * c + L * 2 * (9 * c^2 + c) + 9 * c * C + C.

    Examples:

        >>> from vcq_hf.configuration_vcq_vq import VCQVQConfig
        >>> pixel_head_num_parameters(VCQVQConfig.from_preset("tiny"))  # 2,976 + 660 + 165
        3801
    """
    conv = vq_config.decoder_type == "conv"
    channels = vq_config.decoder_conv_channels if conv else vq_config.num_channels
    projection = (vq_config.decoder_hidden_size + 1) * vq_config.patch_size**2 * channels
    if not conv:
        return projection
    blocks = vq_config.decoder_conv_layers * 2 * (9 * channels * channels + channels)
    return projection + blocks + 9 * channels * vq_config.num_channels + vq_config.num_channels


def _tokenizer_forward_flops_per_image(num_parameters: int, vq_config: Any) -> dict[str, float]:
    """Forward FLOPs of one image through the tokenizer: `"encoder"` and `"decoder"` (its ViT plus the pixel head).

    Each ViT runs over (patches + T) tokens at 2 FLOPs per weight per token plus 4 * layers * sequence * width per
    token for the attention scores and values (PaLM's accounting, forward third); the ViT weights are the model's
    parameters minus the pixel head's, split between encoder and decoder by depth x width^2. The pixel head is
    counted per patch and per pixel by `pixel_head_forward_flops`. Training costs 3x the forward (backward = 2x).
    """
    patches = (vq_config.image_size // vq_config.patch_size) ** 2
    sequence = patches + vq_config.num_image_tokens
    vit_weights = num_parameters - pixel_head_num_parameters(vq_config)
    size = {
        part: getattr(vq_config, f"{part}_num_layers") * getattr(vq_config, f"{part}_hidden_size") ** 2
        for part in ("encoder", "decoder")
    }
    flops = {}
    for part in ("encoder", "decoder"):
        weights = vit_weights * size[part] / (size["encoder"] + size["decoder"])
        width, layers = getattr(vq_config, f"{part}_hidden_size"), getattr(vq_config, f"{part}_num_layers")
        flops[part] = float((2 * weights + 4 * layers * sequence * width) * sequence)
    flops["decoder"] += pixel_head_forward_flops(vq_config)
    return flops


def imagenet_compute_estimates() -> list[dict[str, Any]]:
    """FLOP-based GPU-hour ESTIMATES for each stage of the ImageNet-256 recipe (docs/imagenet.md); not measurements.

    Training stages count 6 FLOPs per parameter per token (input-embedding lookups excluded) plus 12 * layers *
    sequence * width per token for attention; the tokenizer's conv pixel head is counted at full resolution instead
    (3x `pixel_head_forward_flops`), and the tokenizer adds the VGG-16 perceptual loss (forward on the input,
    forward + backward on the reconstruction). Sampling counts the forward passes of the cached decode (2 per
    parameter per token, doubled for classifier-free guidance) plus the tokenizer's decoder; it is memory- and
    latency-bound in practice, so its figure is a lower bound. GPU-hours = FLOPs / (peak bf16 * `ASSUMED_MFU`).

    Returns:
        `list[dict]`: one row per stage with `stage`, `work`, `flops` and `gpu_hours` (GPU name -> hours).
    """
    import copy

    return copy.deepcopy(_compute_estimates())


@functools.lru_cache(maxsize=1)
def _compute_estimates() -> list[dict[str, Any]]:
    from ..configuration_vcq_vq import VCQVQConfig
    from ..modeling_vcq import VCQForCausalLM
    from ..modeling_vcq_vq import VCQVQModel

    vq_config = VCQVQConfig.from_preset(IMAGENET_TOKENIZER_PRESET)
    vq_params = count_parameters_on_meta(VCQVQModel, vq_config)["total"]
    images = TOKENIZER_TRAIN_STEPS * TOKENIZER_GLOBAL_BATCH
    vgg = 4 * VGG16_FORWARD_FLOPS_224 * (vq_config.image_size / 224) ** 2
    forward = _tokenizer_forward_flops_per_image(vq_params, vq_config)
    rows = [
        {
            "stage": f"tokenizer `{IMAGENET_TOKENIZER_PRESET}` ({vq_params / 1e6:.1f}M params)",
            "work": f"{TOKENIZER_TRAIN_STEPS:,} steps x batch {TOKENIZER_GLOBAL_BATCH} = {images / 1e6:.0f}M images",
            "flops": images * (3 * (forward["encoder"] + forward["decoder"]) + vgg),
        }
    ]
    code_images = 2 * IMAGENET_TRAIN_IMAGES
    rows.append(
        {
            "stage": "code extraction (encoder forward, with flips)",
            "work": f"{code_images:,} images",
            "flops": code_images * forward["encoder"],
        }
    )
    for preset in AR_PRESETS:
        _, ar_config = imagenet_configs(preset)
        counts = count_parameters_on_meta(VCQForCausalLM, ar_config)
        weights = counts["total"] - counts["input_embedding"]
        sequence = ar_config.max_position_embeddings
        per_token = 6 * weights + 12 * ar_config.num_hidden_layers * sequence * ar_config.hidden_size
        sequences = AR_EPOCHS_OVER_FLIPPED_CODES * code_images
        rows.append(
            {
                "stage": f"AR prior `{preset}` ({counts['total'] / 1e6:.1f}M params)",
                "work": f"{AR_EPOCHS_OVER_FLIPPED_CODES} epochs x {code_images:,} sequences x {sequence} tokens",
                "flops": float(per_token * sequence * sequences),
            }
        )
    _, ar_config = imagenet_configs("vcq-684m")
    counts = count_parameters_on_meta(VCQForCausalLM, ar_config)
    sequence = ar_config.max_position_embeddings
    per_image = 2 * 2 * (counts["total"] - counts["input_embedding"]) * sequence
    decoder = forward["decoder"]
    rows.append(
        {
            "stage": "sampling with `vcq-684m` + CFG (lower bound)",
            "work": f"{NUM_EVAL_SAMPLES:,} images",
            "flops": float(NUM_EVAL_SAMPLES * (per_image + decoder)),
        }
    )
    for row in rows:
        row["gpu_hours"] = {
            gpu: row["flops"] / (peak * ASSUMED_MFU) / 3600 for gpu, peak in GPU_PEAK_BF16_FLOPS.items()
        }
    return rows


def format_compute_estimates(rows: Sequence[Mapping[str, Any]] | None = None) -> str:
    """`imagenet_compute_estimates()` as a Markdown table (the one in docs/imagenet.md and the preset cards)."""
    rows = imagenet_compute_estimates() if rows is None else rows
    gpus = list(GPU_PEAK_BF16_FLOPS)
    header = "| stage | work | FLOPs | " + " | ".join(f"{gpu} GPU-hours (estimate)" for gpu in gpus) + " |"
    lines = [header, "| --- | --- | --- |" + " --- |" * len(gpus)]
    for row in rows:
        hours = " | ".join(_format_hours(row["gpu_hours"][gpu]) for gpu in gpus)
        lines.append(f"| {row['stage']} | {row['work']} | {row['flops']:.2e} | {hours} |")
    return "\n".join(lines)


def _format_hours(hours: float) -> str:
    return f"{hours:,.0f}" if hours >= 10 else f"{hours:.1f}" if hours >= 0.1 else "< 0.1"


def _estimate_note() -> str:
    peaks = ", ".join(f"{gpu} {peak / 1e12:.0f} TFLOP/s" for gpu, peak in GPU_PEAK_BF16_FLOPS.items())
    return (
        f"ESTIMATES from FLOP counts, not measurements (no GPU was available to this project): dense bf16 peak "
        f"({peaks}) at an assumed {ASSUMED_MFU:.0%} model-FLOP utilisation. Training: 6 FLOPs per parameter per "
        "token (input-embedding lookups excluded) + 12 x layers x sequence x width per token for attention, except "
        "the tokenizer's conv pixel head, whose 3x3 convs are counted per pixel at full resolution; the tokenizer "
        "row includes the VGG-16 perceptual loss but not the discriminator. Sampling is latency-bound, "
        "so its row is a lower bound. Regenerate with `python -m vcq_hf.hub.model_card --compute_estimates`."
    )


def imagenet_recipe_commands(preset: str) -> str:
    """The four commands (tokenizer, codes, prior, samples) that train and sample an ImageNet preset."""
    config_file, launch_flags, batch, learning_rate = _PRESET_LAUNCH[preset]
    ema = "" if config_file == "fsdp.yaml" else " --use_ema"
    output = f"runs/{preset}-in256"
    return "\n".join(
        [
            "# 1. tokenizer (imagenet-256 preset), one node of 8 GPUs",
            "accelerate launch --config_file examples/configs/multi_gpu.yaml examples/train_tokenizer.py \\",
            "  --train_data_dir /data/imagenet/train --model_config imagenet-256 --random_flip \\",
            "  --dataloader_num_workers 8 --train_batch_size 32 --learning_rate 1e-4 --lr_scheduler cosine \\",
            f"  --lr_warmup_steps 10000 --max_train_steps {TOKENIZER_TRAIN_STEPS} --mixed_precision bf16 --use_ema \\",
            "  --perceptual_weights /weights/vgg16_features.safetensors --use_discriminator --disc_start_step 200000 \\",
            "  --checkpointing_steps 5000 --checkpoints_total_limit 3 --output_dir runs/vcq-tokenizer-in256",
            "# 2. codes with flip augmentation",
            "accelerate launch --config_file examples/configs/multi_gpu.yaml examples/extract_codes.py \\",
            "  --vq_model_path runs/vcq-tokenizer-in256 --train_data_dir /data/imagenet/train --flip_augmentation \\",
            "  --batch_size 256 --dataloader_num_workers 8 --mixed_precision bf16 --output_dir runs/in256-codes",
            f"# 3. the {preset} prior ({config_file})",
            f"accelerate launch --config_file examples/configs/{config_file}{launch_flags} examples/train_ar.py \\",
            f"  --codes_dir runs/in256-codes --model_config {preset} --train_batch_size {batch} \\",
            f"  --learning_rate {learning_rate} --adam_weight_decay 0.05 --adam_beta2 0.95 --lr_scheduler constant \\",
            f"  --lr_warmup_steps 0 --num_epochs {AR_EPOCHS_OVER_FLIPPED_CODES} --mixed_precision bf16{ema} \\",
            f"  --checkpointing_steps 5000 --checkpoints_total_limit 3 --output_dir {output}",
            "# 4. 50,000 class-balanced samples as an ADM .npz",
            "accelerate launch --config_file examples/configs/multi_gpu.yaml examples/sample.py \\",
            f"  --pipeline_path {output} --num_samples {NUM_EVAL_SAMPLES} --guidance_scale 2.0 --batch_size 125 \\",
            f"  --no_png --mixed_precision bf16 --output_dir {output}-samples",
        ]
    )


def build_preset_card(preset: str) -> ModelCard:
    """The model card of an ImageNet-256 AR preset (`vcq-b`, `vcq-l`, `vcq-xl`, `vcq-684m`): configuration and
    parameter counts measured from the code, loading/sampling, the training recipe, FLOP-based compute estimates and
    the paper's reported figures (labelled as such: this project trained no ImageNet model)."""
    from ..modeling_vcq import VCQForCausalLM
    from ..modeling_vcq_vq import VCQVQModel

    vq_config, ar_config = imagenet_configs(preset)
    ar_counts = count_parameters_on_meta(VCQForCausalLM, ar_config)
    vq_counts = count_parameters_on_meta(VCQVQModel, vq_config)
    sizes = list(ar_config.codebook_sizes)
    cliff_vcq = cliff_position(IMAGENET_TRAIN_IMAGES, sizes)
    cliff_uniform = cliff_position(IMAGENET_TRAIN_IMAGES, [ar_config.codebook_size] * len(sizes))
    name = preset.upper()
    summary = (
        f"The `{preset}` preset of vcq_hf: a class-conditional Llama-style AR prior (`VCQForCausalLM`, "
        f"{_PRESET_NOTES[preset]}; {ar_counts['total']:,} parameters) over the T = {len(sizes)} codes of the "
        f"`{IMAGENET_TOKENIZER_PRESET}` VCQ tokenizer (`VCQVQConfig`), for ImageNet 256x256 with 1000 classes. "
        f"Position t picks among the first K_t entries of one shared codebook of K_max = {sizes[-1]}: K_t grows from "
        f"{sizes[0]} to {sizes[-1]} on a {vq_config.schedule} schedule, which moves the entropy cliff for N = "
        f"{IMAGENET_TRAIN_IMAGES:,} images from position {cliff_uniform} (uniform codebook) to {cliff_vcq}.\n\n"
        "**No weights are published with this card: this project has not trained this model** (no GPU was "
        "available to it). The card documents the configuration and the recipe; the results below are the paper's."
    )
    usage = "\n".join(
        [
            "```python",
            "import torch",
            "from vcq_hf import VCQConfig, VCQForCausalLM, VCQPipeline, VCQVQConfig",
            "",
            "# The architecture: tokenizer and prior configs agree on the schedule by construction.",
            f'vq_config = VCQVQConfig.from_preset("{IMAGENET_TOKENIZER_PRESET}")',
            f'config = VCQConfig.from_vq_config(vq_config, preset="{preset}")',
            'with torch.device("meta"):  # no memory; drop this line to allocate random weights',
            "    model = VCQForCausalLM(config)",
            f"print(model.num_parameters())  # {ar_counts['total']}",
            "",
            "# A pipeline trained with the recipe below (train_ar.py writes this folder):",
            f'pipe = VCQPipeline.from_pretrained("runs/{preset}-in256", torch_dtype=torch.bfloat16).to("cuda")',
            "images = pipe(class_labels=[207, 360, 387, 974], guidance_scale=2.0,",
            "              generator=torch.Generator().manual_seed(0)).images",
            "```",
            "",
            "From the command line:",
            "",
            "```bash",
            f"vcq generate --model runs/{preset}-in256 --class-labels 207 360 387 974 --guidance-scale 2.0 \\",
            "  --device cuda --dtype bfloat16 --output grid.png",
            "```",
            "",
            remote_code_usage(f"runs/{preset}-in256", "tench, Tinca tinca"),
        ]
    )
    config_file = _PRESET_LAUNCH[preset][0]
    recipe_note = (
        f"The full recipe, with data preparation and evaluation, is in `docs/imagenet.md`. Step 3 uses "
        f"`examples/configs/{config_file}`"
        + (" (FSDP2: no `--use_ema`)" if config_file == "fsdp.yaml" else "")
        + ". One epoch of the flip-augmented code set is 2 x 1,281,167 sequences, so "
        f"{AR_EPOCHS_OVER_FLIPPED_CODES} epochs equal 300 passes over ImageNet's size (LlamaGen's budget). Global "
        "batch 256 for the tokenizer and the prior; the uniform-codebook baseline adds "
        "`--config_overrides schedule=constant` to step 1."
    )
    estimates = [
        row
        for row in imagenet_compute_estimates()
        if not row["stage"].startswith("AR prior") or f"`{preset}`" in row["stage"]
    ]
    extra = {
        "Training recipe notes": recipe_note,
        "Estimated compute": _estimate_note() + "\n\n" + format_compute_estimates(estimates),
    }
    card = build_model_card(
        "pipeline",
        vq_config=vq_config,
        ar_config=ar_config,
        num_parameters={
            f"transformer (`VCQForCausalLM`, `{preset}`)": ar_counts["total"],
            "of which the input embedding": ar_counts["input_embedding"],
            f"vq_model (`VCQVQModel`, `{IMAGENET_TOKENIZER_PRESET}`)": vq_counts["total"],
        },
        num_train_images=IMAGENET_TRAIN_IMAGES,
        command=imagenet_recipe_commands(preset),
        title=f"{name}: VCQ class-conditional ImageNet 256x256 generator (preset `{preset}`, not trained here)",
        summary=summary,
        hub_datasets=[IMAGENET_HUB_DATASET],
        metrics=["fid", "accuracy"],
        usage=usage,
        reported_results=PAPER_REPORTED,
        reported_results_source=PAPER_SOURCE
        + (
            ""
            if preset == "vcq-684m"
            else " The 1.71 gFID is for a 684M-parameter prior (the size of the `vcq-684m` preset), not this preset."
        ),
        extra_sections=extra,
        tags=["imagenet", "class-conditional", f"preset-{preset}"],
        limitations=(
            "Untrained configuration: nothing on this card was measured on ImageNet by this project. ImageNet "
            "weights trained with this recipe are subject to the ImageNet terms of access."
        ),
    )
    return card


def _read_json(path: Path) -> dict[str, Any] | None:
    import json

    return json.loads(path.read_text()) if path.is_file() else None


def _demo_summaries(demo_dir: Path) -> dict[str, dict[str, Any]]:
    """training_summary*.json files of the demo folder (benchmarks/export_demo.py names them
    training_summary_ar.json and training_summary_tokenizer.json), keyed by the script that wrote them."""
    summaries = {}
    for path in sorted(demo_dir.rglob("training_summary*.json")):
        data = _read_json(path) or {}
        script = str(data.get("script", path.stem)).removesuffix(".py")
        if path.stem == "training_summary_decoder":  # train_tokenizer.py --decoder_only (export_demo --vq_model_dir)
            script = "train_tokenizer_decoder"
        summaries[script] = {**data, "_path": path.relative_to(demo_dir).as_posix()}
    return summaries


def _readme_bash_block(readme: Path) -> str | None:
    """The first bash block of the card's "Training recipe" section (else of the whole card, for older cards)."""
    if not readme.is_file():
        return None
    text = readme.read_text()
    recipe = text.find("\n## Training recipe")
    start = text.find("```bash\n", max(recipe, 0))
    if start < 0:
        return None
    end = text.find("```", start + 8)
    return text[start + 8 : end].strip() or None


def _demo_command(demo_dir: Path, summaries: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The commands that trained the demo: a summary's `command`, else (for the prior) the bash block of the card
    train_ar.py wrote next to it."""
    lines = []
    for script in ("train_tokenizer", "train_ar"):
        command = summaries.get(script, {}).get("command")
        if not isinstance(command, str) and script == "train_ar":
            command = _readme_bash_block(demo_dir / "README.md")
            if command and "# train_ar.py\n" in command:  # the README is a demo card already: its prior's command
                command = command.split("# train_ar.py\n", 1)[1].strip()
        if isinstance(command, str):
            lines += [f"# {script}.py", command]
    return "\n".join(lines) or None


def _study_section(results: Mapping[str, Any]) -> str | None:
    """A VCQ-vs-uniform table from docs/reproduction/results.json (benchmarks/reproduce_small.py), when present."""
    arms = [
        arm for arm in ("constant", "log") if arm in results.get("entropy", {}) or arm in results.get("generation", {})
    ]
    if not arms:
        return None
    rows: dict[str, list[str]] = {}

    def add(label: str, values: list[Any], fmt: str) -> None:
        if all(v is not None for v in values):
            rows[label] = [format(v, fmt) for v in values]

    add("reconstruction PSNR (dB, test)", [results.get(f"reconstruction-{a}", {}).get("psnr") for a in arms], ".2f")
    add(
        "rFID (FMNIST-CNN features, test)",
        [results.get(f"reconstruction-{a}", {}).get("rFID-FMNIST-CNN") for a in arms],
        ".2f",
    )
    add(
        "predicted entropy cliff (position)",
        [results.get("entropy", {}).get(a, {}).get("predicted_cliff") for a in arms],
        "",
    )
    add(
        "observed entropy cliff (position)",
        [results.get("entropy", {}).get(a, {}).get("observed_cliff") for a in arms],
        "",
    )
    probe = results.get("probe", {})
    if all(a in probe for a in arms):
        ks = probe[arms[0]].get("ks", [])
        for k in [k for k in (1, 4, 10) if k in ks]:
            index = ks.index(k)
            add(
                f"linear probe top-1 on the first {k} tokens (%)",
                [probe[a]["test_accuracy"][index] * 100 if k in probe[a].get("ks", []) else None for a in arms],
                ".1f",
            )
    generation = results.get("generation", {})
    if all(a in generation for a in arms):
        add(
            "gFID (FMNIST-CNN), no guidance",
            [generation[a].get("no_guidance", {}).get("FID-FMNIST-CNN") for a in arms],
            ".2f",
        )
        add(
            "gFID (FMNIST-CNN), best guidance",
            [generation[a].get("best_guidance", {}).get("FID-FMNIST-CNN") for a in arms],
            ".2f",
        )
        add("best guidance scale", [generation[a].get("best_guidance_scale") for a in arms], "g")
    if not rows:
        return None
    names = {"constant": "uniform codebook (constant K)", "log": "VCQ (log schedule)"}
    lines = [
        "Measured by `benchmarks/reproduce_small.py` on Fashion-MNIST 32x32 (two arms that differ only in the "
        "tokenizer's `schedule` field; its priors use the study's own settings, stored in "
        "`docs/reproduction/results.json`, which need not be those of this demo checkpoint). Full tables: "
        "`docs/reproduction/`.",
        "",
        "| | " + " | ".join(names[a] for a in arms) + " |",
        "| --- |" + " --- |" * len(arms),
    ]
    lines += [f"| {label} | " + " | ".join(values) + " |" for label, values in rows.items()]
    return "\n".join(lines)


# examples/evaluate_pipeline.py metric names (without the feature-space suffix) -> Hub metric ids.
_METRIC_TYPES = {
    "FID": "fid",
    "KID": "kid",
    "IS": "inception_score",
    "precision": "precision",
    "recall": "recall",
    "class-accuracy": "accuracy",
}


def _metric_type(key: str) -> str:
    """`"FID-FMNIST-CNN"` -> `"fid"`, `"class-accuracy-FMNIST-CNN"` -> `"accuracy"`: the Hub metric id of a score
    named `<metric>-<feature space>` by examples/evaluate_pipeline.py."""
    for name, metric_type in _METRIC_TYPES.items():
        if key == name or key.startswith(f"{name}-"):
            return metric_type
    return "accuracy" if "accuracy" in key else key.lower()


def _demo_sample_image(demo_dir: Path, card_dir: str | os.PathLike | None) -> str | None:
    """The demo's sample grid, as a link relative to the folder the card is written to (none without one)."""
    grid = demo_dir / "sample_grid.png"
    if not grid.is_file() or card_dir is None:
        return None
    return Path(os.path.relpath(grid.resolve(), Path(card_dir).resolve())).as_posix()


def build_demo_card(
    demo_dir: str | os.PathLike = DEMO_DIR,
    results_path: str | os.PathLike | None = None,
    card_dir: str | os.PathLike | None = None,
) -> ModelCard:
    """The model card of the demo checkpoint bundled in `vcq_hf/demo/`, with every figure read from its files.

    Args:
        demo_dir (`str` or `os.PathLike`, *optional*): the demo `VCQPipeline` folder (model_index.json, vq_model/,
            transformer/, training_summary.json files).
        results_path (`str` or `os.PathLike`, *optional*): a `benchmarks/reproduce_small.py` results.json for the
            small-scale study section (none without it).
        card_dir (`str` or `os.PathLike`, *optional*): the folder the card will be written to, for a relative link
            to the demo's sample grid (no image without it).

    The demo's own evaluations (`evaluation*.json`, written by `examples/evaluate_pipeline.py`) become the card's
    `model-index` eval results.

    Raises:
        `FileNotFoundError`: if `demo_dir` has no `model_index.json`.
    """
    from ..configuration_vcq import VCQConfig
    from ..configuration_vcq_vq import VCQVQConfig
    from ..modeling_vcq import VCQForCausalLM
    from ..modeling_vcq_vq import VCQVQModel

    demo_dir = Path(demo_dir)
    index = _read_json(demo_dir / "model_index.json")
    if index is None:
        raise FileNotFoundError(f"{demo_dir} has no model_index.json: the demo checkpoint is not there.")
    vq_config = VCQVQConfig.from_pretrained(demo_dir / "vq_model")
    ar_config = VCQConfig.from_pretrained(demo_dir / "transformer")
    id2label = {int(k): v for k, v in (index.get("id2label") or {}).items()}
    summaries = _demo_summaries(demo_dir)
    ar_summary = summaries.get("train_ar", {})
    vq_summary = summaries.get("train_tokenizer", {})
    num_train_images = vq_summary.get("num_train_images")
    results: dict[str, Any] = {}
    decoder_summary = summaries.get("train_tokenizer_decoder", {})
    for label, summary in (
        ("tokenizer", vq_summary),
        ("decoder v2 (frozen encoder and codebook)", decoder_summary),
        ("prior", ar_summary),
    ):
        if not summary:
            continue
        results[f"{label}: optimizer steps"] = summary.get("global_step")
        results[f"{label}: global batch"] = summary.get("total_batch_size")
        results[f"{label}: processes"] = summary.get("num_processes")
        results[f"{label}: wall time (s)"] = summary.get("wall_time_s")
        for key, value in (summary.get("final_logs") or {}).items():
            if key not in ("lr", "epoch"):
                results[f"{label}: final {key}"] = value
    if ar_summary.get("num_train_sequences") is not None:
        results["prior: training sequences (with flips)"] = ar_summary["num_train_sequences"]
    # metrics.json files written by examples/evaluate_pipeline.py, copied next to the checkpoint as evaluation*.json
    eval_results = []
    for path in sorted(demo_dir.glob("evaluation*.json")):
        evaluation = _read_json(path) or {}
        setting = (
            f"{evaluation.get('num_samples')} samples, guidance {evaluation.get('guidance_scale'):g}, "
            f"vs {evaluation.get('num_reference')} {evaluation.get('reference_split')} images"
        )
        for key, value in (evaluation.get("metrics") or {}).items():
            if not key.endswith("-std"):
                results[f"samples ({setting}): {key}"] = round(value, 4)
                eval_results.append(
                    EvalResult(
                        task_type="text-to-image",
                        task_name="Class-conditional image generation",
                        dataset_type="zalando-datasets/fashion_mnist",
                        dataset_name="Fashion-MNIST 32x32",
                        dataset_split=str(evaluation.get("reference_split")),
                        metric_type=_metric_type(key),
                        metric_name=f"{key} ({setting})",
                        metric_value=round(float(value), 4),
                    )
                )
    code_usage = vq_summary.get("code_usage")
    study = _read_json(Path(results_path)) if results_path is not None else None
    extra = {}
    command = _demo_command(demo_dir, summaries)
    if vq_summary and (command is None or "train_tokenizer" not in command):
        extra["Training recipe notes"] = (
            f"The tokenizer's command line is not stored with the checkpoint; its run is summarised in "
            f"`{vq_summary['_path']}` (steps, batch, wall time, final losses, code usage; shown under Results)."
        )
    if study:
        section = _study_section(study)
        if section:
            extra["Small-scale study: VCQ vs uniform codebook"] = section
    sources = ", ".join(f"`{s['_path']}`" for s in summaries.values()) or "none"
    usage = "\n".join(
        [
            "```python",
            "import torch",
            "from vcq_hf import VCQPipeline",
            "from vcq_hf.cli_generate import DEFAULT_MODEL  # the folder bundled with the package: vcq_hf/demo",
            "",
            "pipe = VCQPipeline.from_pretrained(DEFAULT_MODEL)",
            f'images = pipe(class_labels=pipe.get_label_ids(["{next(iter(id2label.values()), "0")}"]), '
            "guidance_scale=2.0,",
            "              generator=torch.Generator().manual_seed(0)).images",
            "```",
            "",
            "From the command line (`--model` defaults to the bundled demo): `vcq generate --output grid.png`.",
            "",
            remote_code_usage("path/to/vcq_hf/demo", next(iter(id2label.values()), None)),
        ]
    )
    card = build_model_card(
        "pipeline",
        vq_config=vq_config,
        ar_config=ar_config,
        num_parameters={
            "transformer (`VCQForCausalLM`)": count_parameters_on_meta(VCQForCausalLM, ar_config)["total"],
            "vq_model (`VCQVQModel`)": count_parameters_on_meta(VCQVQModel, vq_config)["total"],
        },
        dataset="fashion-mnist",
        num_train_images=num_train_images,
        id2label=id2label,
        command=command,
        results=results,
        code_usage=code_usage,
        title="VCQ demo: class-conditional Fashion-MNIST 32x32 generator (bundled with vcq_hf)",
        summary=(
            "The small checkpoint shipped inside the vcq_hf package (`vcq_hf/demo/`), trained on CPU by this project "
            "with the example scripts: a VCQ tokenizer and a Llama-style AR prior over its codes, for the 10 "
            "Fashion-MNIST classes at 32x32. Every figure below is read from the checkpoint's own files "
            f"(configs, {sources})."
        ),
        hub_datasets=["zalando-datasets/fashion_mnist"],
        metrics=["fid"] if study or eval_results else [],
        usage=usage,
        extra_sections=extra,
        tags=["fashion-mnist", "class-conditional", "demo"],
        sample_image=_demo_sample_image(demo_dir, card_dir),
        eval_results=eval_results,
        model_name="vcq-demo-fmnist",
    )
    return card


def render_model_cards(
    output_dir: str | os.PathLike,
    demo_dir: str | os.PathLike = DEMO_DIR,
    results_path: str | os.PathLike | None = REPRODUCTION_RESULTS,
) -> dict[str, str]:
    """Render every card: `{file name: text}` for the four ImageNet presets and, when present, the demo (with the
    study results at `results_path` when that file exists, and its sample grid linked relative to `output_dir`)."""
    cards = {f"{preset}.md": str(build_preset_card(preset)) for preset in AR_PRESETS}
    if (Path(demo_dir) / "model_index.json").is_file():
        cards[f"{DEMO_CARD_NAME}.md"] = str(build_demo_card(demo_dir, results_path=results_path, card_dir=output_dir))
    return cards


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m vcq_hf.hub.model_card`: write (or `--check`) the committed model cards, or print compute estimates."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m vcq_hf.hub.model_card", description=main.__doc__)
    parser.add_argument("--output_dir", default="model_cards", help="Where the cards go (default: model_cards).")
    parser.add_argument(
        "--preset", nargs="*", default=None, help=f"Only these cards: {', '.join(AR_PRESETS)}, {DEMO_CARD_NAME}."
    )
    parser.add_argument("--demo_dir", default=str(DEMO_DIR), help="The demo VCQPipeline folder.")
    parser.add_argument(
        "--reproduction_results",
        default=str(REPRODUCTION_RESULTS),
        help="The study's results.json for the demo card (default: docs/reproduction/results.json).",
    )
    parser.add_argument("--check", action="store_true", help="Exit 1 if a committed card differs from a fresh one.")
    parser.add_argument("--compute_estimates", action="store_true", help="Print the GPU-hour estimate table.")
    args = parser.parse_args(argv)
    if args.compute_estimates:
        print(_estimate_note() + "\n\n" + format_compute_estimates())
        return 0
    known = (*AR_PRESETS, DEMO_CARD_NAME)
    unknown = [name for name in args.preset or [] if name not in known]
    if unknown:
        parser.error(f"unknown --preset {unknown}; expected names from {known}.")
    cards = render_model_cards(args.output_dir, args.demo_dir, args.reproduction_results)
    if args.preset:
        cards = {name: text for name, text in cards.items() if name.removesuffix(".md") in args.preset}
    stale = []
    for name, text in cards.items():
        path = Path(args.output_dir) / name
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    if stale:
        print("stale model cards (run python -m vcq_hf.hub.model_card): " + ", ".join(stale))
        return 1
    return 0


__all__ = [
    "AR_PRESETS",
    "MODEL_CARD_KINDS",
    "build_demo_card",
    "build_model_card",
    "build_preset_card",
    "count_parameters_on_meta",
    "format_compute_estimates",
    "imagenet_compute_estimates",
    "imagenet_recipe_commands",
    "pixel_head_forward_flops",
    "pixel_head_num_parameters",
    "render_model_cards",
    "save_model_card",
]


if __name__ == "__main__":
    raise SystemExit(main())
