"""The demo checkpoint bundled in the package: what the README's first command runs."""

from pathlib import Path

import numpy as np
import torch

from vcq_hf import VCQPipeline
from vcq_hf.cli import main as vcq_main
from vcq_hf.cli_generate import DEFAULT_MODEL
from vcq_hf.schedules import codebook_sizes


FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip


def test_demo_is_small_safetensors_json_and_model_code_only():
    files = [path for path in Path(DEFAULT_MODEL).rglob("*") if path.is_file()]
    assert sum(path.stat().st_size for path in files) <= 25 * 2**20
    assert {path.suffix for path in files} <= {".json", ".safetensors", ".md", ".png", ".py"}
    # the .py files are the model code that remote-code loading runs: copies of vcq_hf's own modules
    package = Path(DEFAULT_MODEL).parent
    assert {path.name for path in files if path.suffix == ".py"} <= {path.name for path in package.glob("*.py")}
    assert (Path(DEFAULT_MODEL) / "vq_model" / "preprocessor_config.json").is_file()


def test_demo_pipeline_samples_valid_codes_and_images():
    pipe = VCQPipeline.from_pretrained(DEFAULT_MODEL)
    pipe.set_progress_bar_config(disable=True)
    assert [pipe.id2label[i] for i in range(10)] == FASHION_MNIST_CLASSES
    assert list(pipe.vq_model.config.codebook_sizes) == list(codebook_sizes(32, 2, 1024, "linear"))
    out = pipe(class_labels=["Trouser", "Bag"], guidance_scale=2.0, generator=torch.manual_seed(0), output_type="np")
    assert out.images.shape == (2, 32, 32, 3) and 0.0 <= out.images.min() and out.images.max() <= 1.0
    assert (out.codes < torch.tensor(pipe.transformer.config.codebook_sizes)).all()


def test_demo_samples_are_recognised_as_their_classes():
    """A trained model, not noise: the shipped Fashion-MNIST classifier recognises most samples' classes
    (0.65-0.8 over seeds 0-2 when measured; chance is 0.1)."""
    from vcq_hf.metrics import FashionMNISTFeatureExtractor

    pipe = VCQPipeline.from_pretrained(DEFAULT_MODEL)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(class_labels=list(range(10)), num_images_per_class=2, guidance_scale=2.0,
               generator=torch.manual_seed(0), output_type="np")  # fmt: skip
    _, logits = FashionMNISTFeatureExtractor().extract(out.images)
    accuracy = (logits.argmax(1) == np.repeat(np.arange(10), 2)).mean()
    assert accuracy >= 0.5, accuracy


def test_readme_first_command_writes_the_grid(tmp_path, capsys):
    output = tmp_path / "vcq-demo-grid.png"
    assert vcq_main(["generate", "--guidance-scale", "2.0", "--num-images-per-class", "1", "--output", str(output),
                     "--quiet"]) == 0  # fmt: skip
    from PIL import Image

    with Image.open(output) as grid:
        assert grid.width > 32 and grid.height >= 10 * 32
