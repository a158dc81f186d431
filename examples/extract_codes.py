#!/usr/bin/env python
"""Encode an image data set into VCQ codes with a trained tokenizer and save them as a 🤗 `datasets` Dataset.

The output folder (`Dataset.save_to_disk`, Arrow) has the columns "codes" (a fixed-length int32 sequence of T codes),
"label" (`ClassLabel` with the data set's class names), "flipped" (bool) and "source_index" (row in the source
split), plus `vcq_meta.json` with the tokenizer's `codebook_sizes`, the class names and where everything came from.
With `--flip_augmentation` every image is also encoded mirrored, doubling the set (the originals come first).

Runs on any number of processes: each rank encodes a contiguous shard, `gather_object` brings the shards to every
rank in order (no shared file system needed) and rank 0 writes the dataset.

The dataset is written into a temporary folder beside `--output_dir` and moved into place when complete.
`--overwrite` replaces only a folder this script wrote (it holds `vcq_meta.json`), and the output may not be (or
contain) the tokenizer or the image folder it reads.

    accelerate launch examples/extract_codes.py --vq_model vcq-tokenizer-fmnist \
        --dataset_name fashion-mnist --flip_augmentation --output_dir fmnist-codes

Load the result with `datasets.load_from_disk(output_dir)`; `examples/train_ar.py --codes_dir output_dir` trains on it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import gather_object, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from vcq_hf.data.codes import META_FILENAME, codes_dataset_info
from vcq_hf.image_processing_vcq import VCQImageProcessor
from vcq_hf.modeling_vcq_vq import VCQVQModel
from vcq_hf.training_utils import scripts as tu
from vcq_hf.training_utils.checkpointing import weights_fingerprint
from vcq_hf.training_utils.files import (
    atomic_write_json,
    explain_unreadable_weights,
    replace_folder,
    sibling_temp_folder,
)


logger = get_logger(__name__, log_level="INFO")


def parse_args(input_args: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[1], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--vq_model",
        "--vq_model_path",
        dest="vq_model_path",
        type=str,
        required=True,
        help="The tokenizer: a folder saved by train_tokenizer.py (`vcq analyze --vq-model`; --vq_model_path is the "
        "older spelling).",
    )
    tu.add_dataset_args(parser)
    parser.add_argument("--output_dir", type=str, required=True, help="Where the codes dataset is saved.")
    parser.add_argument("--flip_augmentation", action="store_true", help="Also encode horizontally flipped images.")
    parser.add_argument("--batch_size", type=int, default=256, help="Images per forward pass per process.")
    parser.add_argument("--dataloader_num_workers", type=int, default=0, help="Workers decoding/resizing images.")
    parser.add_argument("--mixed_precision", type=str, default=None, choices=["no", "fp16", "bf16"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--overwrite", action="store_true", help="Replace a codes dataset this script wrote earlier in --output_dir."
    )
    args = parser.parse_args(input_args)
    tu.check_dataset_args(args)
    if args.batch_size < 1:
        raise ValueError(f"--batch_size = {args.batch_size} must be >= 1.")
    if args.dataloader_num_workers < 0:
        raise ValueError(f"--dataloader_num_workers = {args.dataloader_num_workers} must be >= 0.")
    if not os.path.isfile(os.path.join(args.vq_model_path, "config.json")):
        raise ValueError(f"--vq_model_path {args.vq_model_path!r} has no config.json (train_tokenizer.py output?).")
    check_output_dir(args)
    return args


def check_output_dir(args: argparse.Namespace) -> None:
    """The output may be new or empty, or with --overwrite a codes dataset written by this script; it may never be
    or contain an input (replacing it would delete the tokenizer or the images before they are read)."""
    output_dir = Path(args.output_dir)
    for flag, source in (("--vq_model_path", args.vq_model_path), ("--train_data_dir", args.train_data_dir)):
        if source is None:
            continue
        source = Path(source).resolve()
        if source == output_dir.resolve() or output_dir.resolve() in source.parents:
            raise ValueError(
                f"--output_dir {args.output_dir!r} is or contains the input {flag} {str(source)!r}; writing there "
                "would replace the input. Choose another --output_dir."
            )
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"--output_dir {args.output_dir!r} exists and is not a folder.")
    if not output_dir.is_dir() or not any(output_dir.iterdir()):
        return
    if not os.path.isfile(output_dir / META_FILENAME):
        raise ValueError(
            f"--output_dir {args.output_dir!r} is not empty and was not written by extract_codes.py (it has no "
            f"{META_FILENAME}); refusing to replace it, with or without --overwrite. Choose a new or empty folder."
        )
    if not args.overwrite:
        raise ValueError(f"{args.output_dir} already holds a codes dataset; pass --overwrite to replace it.")


class _Rows(torch.utils.data.Dataset):
    """Rows `indices` of an image dataset, preprocessed to (pixel_values, label, index)."""

    def __init__(self, dataset, indices: list[int], image_processor: VCQImageProcessor):
        self.dataset = dataset
        self.indices = indices
        self.image_processor = image_processor

    def __len__(self) -> int:
        return len(self.indices)

    def __getitems__(self, positions: list[int]) -> dict[str, torch.Tensor]:
        rows = [self.indices[p] for p in positions]
        batch = self.dataset[rows]
        pixel_values = self.image_processor(batch["image"], return_tensors="pt")["pixel_values"]
        labels = torch.tensor(batch["label"] if "label" in batch else [0] * len(rows), dtype=torch.long)
        return {"pixel_values": pixel_values, "label": labels, "index": torch.tensor(rows, dtype=torch.long)}

    def __getitem__(self, position: int) -> dict[str, torch.Tensor]:
        item = self.__getitems__([position])
        return {key: value[0] for key, value in item.items()}


def _identity(batch):
    return batch


@torch.no_grad()
def encode_shard(args, accelerator, model, image_processor, dataset, indices) -> dict[str, np.ndarray]:
    """Codes (originals, then flips if asked) for `indices` on this process."""
    loader = DataLoader(
        _Rows(dataset, indices, image_processor),
        batch_size=args.batch_size,
        shuffle=False,
        num_workers=args.dataloader_num_workers,
        collate_fn=_identity,
    )
    codes, flipped_codes, labels, rows = [], [], [], []
    for batch in tqdm(
        loader, desc=f"Encoding (rank {accelerator.process_index})", disable=not accelerator.is_local_main_process
    ):
        pixel_values = batch["pixel_values"].to(accelerator.device)
        with accelerator.autocast():
            codes.append(model.encode(pixel_values).codes.cpu().to(torch.int32))
            if args.flip_augmentation:
                flipped_codes.append(model.encode(pixel_values.flip(-1)).codes.cpu().to(torch.int32))
        labels.append(batch["label"])
        rows.append(batch["index"])
    num_tokens = model.config.num_image_tokens
    empty = torch.zeros(0, num_tokens, dtype=torch.int32)
    return {
        "codes": torch.cat(codes).numpy() if codes else empty.numpy(),
        "flipped_codes": torch.cat(flipped_codes).numpy() if flipped_codes else empty.numpy(),
        "label": torch.cat(labels).numpy() if labels else np.zeros(0, np.int64),
        "source_index": torch.cat(rows).numpy() if rows else np.zeros(0, np.int64),
    }


def main(args: argparse.Namespace) -> Path:
    start_time = time.time()
    accelerator = Accelerator(mixed_precision=args.mixed_precision)
    tu.setup_logging(accelerator)
    set_seed(args.seed)

    with explain_unreadable_weights(args.vq_model_path):
        model = VCQVQModel.from_pretrained(args.vq_model_path).eval().to(accelerator.device)
    try:
        image_processor = VCQImageProcessor.from_pretrained(args.vq_model_path)
    except OSError:
        image_processor = VCQImageProcessor(image_size=model.config.image_size)
    if image_processor.image_size != model.config.image_size:
        raise ValueError(
            f"The image processor's image_size {image_processor.image_size} differs from the tokenizer's "
            f"image_size {model.config.image_size} in {args.vq_model_path}."
        )
    with accelerator.main_process_first():
        dataset = tu.load_images(args, split=args.split, resolution=model.config.image_size)
    class_names = tu.label_names(dataset)

    output_dir = Path(args.output_dir)
    with accelerator.split_between_processes(list(range(len(dataset)))) as indices:
        logger.info(f"Rank {accelerator.process_index}: {len(indices)} images", main_process_only=False)
        shard = encode_shard(args, accelerator, model, image_processor, dataset, indices)
    shards = gather_object([shard])  # every rank's shard, in rank order

    if accelerator.is_main_process:
        parts = {key: np.concatenate([s[key] for s in shards]) for key in shards[0]}
        # Written beside the target and swapped in when complete: an interrupted run leaves the old result intact.
        check_output_dir(args)
        tmp_dir = sibling_temp_folder(output_dir, "tmp")
        try:
            save_codes_dataset(
                args, tmp_dir, parts, model.config, class_names, len(dataset), weights_fingerprint(model)
            )
            if output_dir.is_dir() and not any(output_dir.iterdir()):
                output_dir.rmdir()
            replace_folder(tmp_dir, output_dir, marker=META_FILENAME)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
        logger.info(
            f"Saved {len(parts['codes']) * (2 if args.flip_augmentation else 1)} code rows to {output_dir} "
            f"in {time.time() - start_time:.1f} s."
        )
    accelerator.wait_for_everyone()
    return output_dir


def save_codes_dataset(
    args, output_dir: Path, parts: dict, vq_config, class_names, num_source_images: int, vq_fingerprint: str
) -> None:
    import datasets

    num_tokens = vq_config.num_image_tokens
    codes, labels, rows = parts["codes"], parts["label"], parts["source_index"]
    flipped = np.zeros(len(codes), dtype=bool)
    if args.flip_augmentation:
        codes = np.concatenate([codes, parts["flipped_codes"]])
        labels = np.concatenate([labels, labels])
        rows = np.concatenate([rows, rows])
        flipped = np.concatenate([flipped, np.ones(len(flipped), dtype=bool)])
    names = class_names or [str(i) for i in range(int(labels.max()) + 1 if len(labels) else 1)]
    features = datasets.Features(
        {
            "codes": datasets.Sequence(datasets.Value("int32"), length=num_tokens),
            "label": datasets.ClassLabel(names=names),
            "flipped": datasets.Value("bool"),
            "source_index": datasets.Value("int64"),
        }
    )
    meta = {
        "codebook_sizes": [int(k) for k in vq_config.codebook_sizes],
        "codebook_size": int(vq_config.codebook_size),
        "num_tokens": int(num_tokens),
        "image_size": int(vq_config.image_size),
        "schedule": getattr(vq_config, "schedule", None),
        "class_names": names,
        "num_rows": int(len(codes)),
        "num_source_images": int(num_source_images),
        "flip_augmentation": bool(args.flip_augmentation),
        "vq_model_path": str(Path(args.vq_model_path).resolve()),
        "vq_model_fingerprint": vq_fingerprint,
        "dataset_name": args.dataset_name,
        "train_data_dir": str(Path(args.train_data_dir).resolve()) if args.train_data_dir else None,
        "split": args.split,
    }
    info = codes_dataset_info(meta, features)  # the metadata travels inside the dataset too (vcq_hf.data.codes)
    dataset = datasets.Dataset.from_dict(
        {"codes": codes.astype(np.int32), "label": labels, "flipped": flipped, "source_index": rows},
        features=features,
        info=info,
    )
    dataset.save_to_disk(str(output_dir))
    atomic_write_json(output_dir / META_FILENAME, meta)  # written last: the mark of a complete codes dataset


if __name__ == "__main__":
    tu.run_script(main, parse_args)
