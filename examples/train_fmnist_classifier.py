"""Train the Fashion-MNIST domain classifier used as the "FMNIST-CNN" feature extractor of `vcq_hf.metrics`.

Trains `vcq_hf.metrics.fmnist_cnn.FashionMNISTCNN` on the official 60,000-image training split (read from the IDX
files of the Debian package `dataset-fashion-mnist`, no network), reports accuracy on the 10,000-image test split and
writes the weights as safetensors plus a JSON with the training record and a sanity table of the metrics computed
with the classifier's features (FID/KID/precision/recall/IS of 10,000 training images against the 10,000 test images,
and of blurred, noisy and class-dropped versions: a usable feature space scores the first low and the others high).

    OMP_NUM_THREADS=2 python examples/train_fmnist_classifier.py \
        --output_file src/vcq_hf/metrics/fmnist_cnn.safetensors
    # only the sanity table, for existing weights:
    python examples/train_fmnist_classifier.py --output_file src/vcq_hf/metrics/fmnist_cnn.safetensors --sanity_only
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from vcq_hf.metrics import FashionMNISTFeatureExtractor, compute_generation_metrics
from vcq_hf.metrics.fmnist_cnn import FMNIST_MEAN, FMNIST_STD, FashionMNISTCNN, load_fashion_mnist_arrays


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--data_dir", type=str, default=None, help="Folder with the Fashion-MNIST IDX .gz files.")
    parser.add_argument("--output_file", type=str, default="fmnist_cnn.safetensors")
    parser.add_argument("--num_epochs", type=int, default=4)
    parser.add_argument("--train_batch_size", type=int, default=128)
    parser.add_argument("--learning_rate", type=float, default=3e-3, help="Peak learning rate of the one-cycle AdamW.")
    parser.add_argument("--weight_decay", type=float, default=1e-4)
    parser.add_argument("--max_train_samples", type=int, default=None, help="Truncate the training split (tests).")
    parser.add_argument("--max_eval_samples", type=int, default=None, help="Truncate the test split (tests).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sanity_only", action="store_true", help="Skip training; sanity table for --output_file.")
    parser.add_argument("--sanity_samples", type=int, default=10000, help="Images per set in the sanity table.")
    args = parser.parse_args(argv)
    if args.num_epochs < 1:
        raise ValueError(f"--num_epochs = {args.num_epochs} must be >= 1.")
    if args.train_batch_size < 2:
        raise ValueError(f"--train_batch_size = {args.train_batch_size} must be >= 2 (batch norm).")
    return args


def to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) -> normalised float (N, 1, 28, 28)."""
    x = torch.from_numpy(np.ascontiguousarray(images).copy()).float().div_(255.0).unsqueeze(1)
    return (x - FMNIST_MEAN) / FMNIST_STD


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and a random shift of up to 2 pixels (zero-padded in normalised units of black)."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    pad = 2
    background = -FMNIST_MEAN / FMNIST_STD
    padded = F.pad(x, (pad, pad, pad, pad), value=background)
    dx, dy = torch.randint(0, 2 * pad + 1, (2,), generator=generator).tolist()
    return padded[:, :, dy : dy + 28, dx : dx + 28]


@torch.no_grad()
def evaluate_accuracy(model: FashionMNISTCNN, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    model.eval()
    correct = 0
    for start in range(0, x.shape[0], batch_size):
        correct += (model(x[start : start + batch_size]).argmax(-1) == y[start : start + batch_size]).sum().item()
    return correct / x.shape[0]


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """uint8 (N, 28, 28) blurred with a (6 sigma + 1)-tap Gaussian, zero ("black") padding, back to uint8."""
    radius = int(3 * sigma)
    taps = torch.exp(-(torch.arange(-radius, radius + 1, dtype=torch.float32) ** 2) / (2 * sigma**2))
    taps = taps / taps.sum()
    x = torch.from_numpy(images.astype(np.float32)).unsqueeze(1)
    x = F.conv2d(x, taps.view(1, 1, 1, -1), padding=(0, radius))
    x = F.conv2d(x, taps.view(1, 1, -1, 1), padding=(radius, 0))
    return x.squeeze(1).round().clamp(0, 255).to(torch.uint8).numpy()


def sanity_table(weights: str, data_dir: str | None, num_samples: int, seed: int) -> list[dict]:
    """Metrics of perturbed sets against the test split, with the classifier as feature extractor."""
    extractor = FashionMNISTFeatureExtractor(weights)
    rng = np.random.default_rng(seed)
    train_images, train_labels = load_fashion_mnist_arrays("train", data_dir)
    test_images, _ = load_fashion_mnist_arrays("test", data_dir)
    reference = test_images[:num_samples]
    train_subset = train_images[rng.permutation(len(train_images))[:num_samples]]
    noisy = np.clip(train_subset.astype(np.float32) + rng.normal(0, 0.1 * 255, train_subset.shape), 0, 255)
    kept = np.nonzero(train_labels >= 3)[0]  # drop T-shirt/top, Trouser and Pullover
    candidates = {
        "train vs test": train_subset,
        "train, Gaussian blur sigma=1": gaussian_blur(train_subset, 1.0),
        "train, Gaussian noise std=0.1": noisy.round().astype(np.uint8),
        "train, classes 0-2 dropped": train_images[rng.permutation(kept)[:num_samples]],
        "train, only class 0 (T-shirt/top)": train_images[np.nonzero(train_labels == 0)[0][:num_samples]],
    }
    real_features, _ = extractor.extract(reference, batch_size=500)
    rows = []
    for name, images in candidates.items():
        features, logits = extractor.extract(images, batch_size=500)
        scores = compute_generation_metrics(
            real_features, features, fake_logits=logits, extractor_name=extractor.name, seed=seed
        )
        rows.append({"set": name, **scores})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def format_sanity_table(rows: list[dict]) -> str:
    name = "FMNIST-CNN"
    num_real = int(rows[0]["num_real"]) if rows else 0
    lines = [
        f"| set ({int(rows[0]['num_fake']) if rows else 0} images vs {num_real} test images) | FID-{name} | KID-{name} | precision | recall | IS-{name} |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['set']} | {row[f'FID-{name}']:.3f} | {row[f'KID-{name}']:.4f} | {row[f'precision-{name}']:.3f} "
            f"| {row[f'recall-{name}']:.3f} | {row[f'IS-{name}']:.2f} |"
        )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> dict:
    if args.sanity_only:
        output_file = Path(args.output_file)
        record_file = output_file.with_suffix(".json")
        summary = json.loads(record_file.read_text()) if record_file.is_file() else {}
        summary["sanity_table"] = sanity_table(str(output_file), args.data_dir, args.sanity_samples, args.seed)
        record_file.write_text(json.dumps(summary, indent=2) + "\n")
        print(format_sanity_table(summary["sanity_table"]))
        return summary
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    train_images, train_labels = load_fashion_mnist_arrays("train", args.data_dir)
    test_images, test_labels = load_fashion_mnist_arrays("test", args.data_dir)
    if args.max_train_samples is not None:
        train_images, train_labels = train_images[: args.max_train_samples], train_labels[: args.max_train_samples]
    if args.max_eval_samples is not None:
        test_images, test_labels = test_images[: args.max_eval_samples], test_labels[: args.max_eval_samples]
    x_train, y_train = to_input(train_images), torch.from_numpy(train_labels)
    x_test, y_test = to_input(test_images), torch.from_numpy(test_labels)

    model = FashionMNISTCNN()
    steps_per_epoch = math.ceil(x_train.shape[0] / args.train_batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.learning_rate, total_steps=args.num_epochs * steps_per_epoch, pct_start=0.2
    )
    history = []
    start_time = time.perf_counter()
    for epoch in range(args.num_epochs):
        model.train()
        order = torch.randperm(x_train.shape[0], generator=generator)
        total_loss = 0.0
        for step in range(steps_per_epoch):
            index = order[step * args.train_batch_size : (step + 1) * args.train_batch_size]
            if index.numel() < 2:
                continue
            loss = F.cross_entropy(model(augment(x_train[index], generator)), y_train[index], label_smoothing=0.05)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.item()
        accuracy = evaluate_accuracy(model, x_test, y_test)
        record = {
            "epoch": epoch + 1,
            "train_loss": total_loss / steps_per_epoch,
            "test_accuracy": accuracy,
            "elapsed_s": time.perf_counter() - start_time,
        }
        history.append(record)
        print(json.dumps(record), flush=True)

    output_file = Path(args.output_file)
    output_file.parent.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    metadata = {
        "architecture": "FashionMNISTCNN",
        "test_accuracy": f"{history[-1]['test_accuracy']:.4f}",
        "num_train_samples": str(x_train.shape[0]),
        "num_epochs": str(args.num_epochs),
        "seed": str(args.seed),
    }
    save_file(state, str(output_file), metadata=metadata)
    summary = {"history": history, "test_accuracy": history[-1]["test_accuracy"], "output_file": str(output_file)}
    summary["train_time_s"] = time.perf_counter() - start_time
    summary["torch_num_threads"] = torch.get_num_threads()
    summary["sanity_table"] = sanity_table(str(output_file), args.data_dir, args.sanity_samples, args.seed)
    output_file.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    print(format_sanity_table(summary["sanity_table"]))
    return summary


if __name__ == "__main__":
    main(parse_args())
