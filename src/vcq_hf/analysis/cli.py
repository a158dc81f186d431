"""Analyse codes and priors: `vcq analyze entropy` (entropy cliff), `probe` (first-k-tokens probe) and the
memorisation measures `nll` (prior NLL on training vs held-out codes), `copies` (generated codes that copy training
codes) and `nearest` (nearest training image of each sample in a feature space).

Codes are read from a `datasets` folder saved with `save_to_disk` (e.g. by `examples/extract_codes.py`; a
`DatasetDict` folder works with `--split`), a parquet file, a `.npy` array `(N, T)` (labels for the probe from
`--labels FILE.npy`), or a `.npz` file with a "codes" array (and "labels"), such as `examples/sample.py`'s
`samples.npz`. Datasets need the columns "codes" (fixed-length integer list) and, for the probe, "label".

The codebook sizes K_t come from `--codebook-sizes-from` (a VCQVQ model folder or its config.json), from
`--codebook-sizes 2,4,8,...`, or from the dataset's `vcq_meta.json` / info metadata when present. Rows marked
`flipped` (flip-augmented copies) are left out unless `--include-flipped` is given.

    vcq analyze entropy --codes codes/ --output-dir reports/entropy
    vcq analyze probe --codes codes/train --test-codes codes/test --ks 0,1,2,4,8,16,32 --output-dir reports/probe
    vcq analyze nll --prior vcq-pipeline --codes codes/train --test-codes codes/test --output-dir reports/nll
    vcq analyze copies --samples samples/samples.npz --codes codes/train --test-codes codes/test
    vcq analyze nearest --samples samples/samples.npz --train-images fashion-mnist:train_full \
        --heldout-images fashion-mnist:test --features fmnist-cnn --output-dir reports/nearest
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


META_FILENAME = "vcq_meta.json"


@dataclass
class CodeSet:
    """Codes `(N, T)`, labels `(N,)` or `None`, and what the source said about the schedule."""

    codes: np.ndarray
    labels: np.ndarray | None
    codebook_sizes: list[int] | None
    num_source_images: int | None
    source: str


def _meta_from_info(dataset) -> dict:
    """The `vcq_meta` dict that extract_codes.py stores in the dataset description, if any."""
    description = getattr(dataset.info, "description", None) or ""
    try:
        parsed = json.loads(description)
    except (json.JSONDecodeError, TypeError):
        return {}
    return parsed.get("vcq_meta", {}) if isinstance(parsed, dict) else {}


def _from_dataset(dataset, meta: dict, include_flipped: bool, source: str) -> CodeSet:
    if "codes" not in dataset.column_names:
        raise ValueError(f"{source} has no 'codes' column; columns are {dataset.column_names}.")
    if not include_flipped and "flipped" in dataset.column_names:
        flipped = np.asarray(dataset["flipped"], dtype=bool)
        if flipped.any():
            dataset = dataset.select(np.nonzero(~flipped)[0])
    table = dataset.with_format("numpy")
    codes = np.asarray(table["codes"])
    if codes.dtype == object:
        raise ValueError(f"{source}: the 'codes' sequences do not all have the same length.")
    labels = np.asarray(table["label"]) if "label" in dataset.column_names else None
    meta = meta or _meta_from_info(dataset)
    sizes = meta.get("codebook_sizes")
    return CodeSet(
        codes=codes,
        labels=labels,
        codebook_sizes=[int(k) for k in sizes] if sizes else None,
        num_source_images=meta.get("num_source_images"),
        source=source,
    )


def load_code_set(
    path: str | os.PathLike,
    split: str | None = None,
    labels_path: str | os.PathLike | None = None,
    include_flipped: bool = False,
) -> CodeSet:
    """Read codes (and labels) from a `save_to_disk` folder, a parquet file, a `.npy` or a `.npz` file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Codes path {path} does not exist.")
    if path.suffix == ".npy":
        codes = np.load(path, mmap_mode="r", allow_pickle=False)
        if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"{path} must hold a 2-D integer array (N, T), got {codes.dtype} {codes.shape}.")
        labels = np.load(labels_path, allow_pickle=False) if labels_path else None
        if labels is not None and labels.shape != (codes.shape[0],):
            raise ValueError(f"{labels_path} holds {labels.shape} labels for {codes.shape[0]} code rows.")
        return CodeSet(codes, labels, None, None, str(path))
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            if "codes" not in archive:
                raise ValueError(f"{path} has no 'codes' array (it holds {sorted(archive.files)}).")
            codes = archive["codes"]
            labels = archive["labels"] if "labels" in archive else None
        if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"{path}: 'codes' must be a 2-D integer array (N, T), got {codes.dtype} {codes.shape}.")
        return CodeSet(codes, labels, None, None, str(path))

    import datasets

    if path.is_dir():
        meta_file = path / META_FILENAME
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            split = split or ("train" if "train" in loaded else next(iter(loaded)))
            if split not in loaded:
                raise ValueError(f"{path} has splits {sorted(loaded)}; --split {split!r} is not one of them.")
            loaded = loaded[split]
        return _from_dataset(loaded, meta, include_flipped, str(path))
    if path.suffix == ".parquet":
        loaded = datasets.Dataset.from_parquet(str(path))
        return _from_dataset(loaded, {}, include_flipped, str(path))
    raise ValueError(f"{path}: expected a save_to_disk folder, a .parquet, .npy or .npz file.")


def read_codebook_sizes(path: str | os.PathLike) -> list[int]:
    """`codebook_sizes` from a VCQVQ model folder (its config.json) or a config.json / vcq_meta.json file."""
    path = Path(path)
    config_file = path / "config.json" if path.is_dir() else path
    if path.is_dir() and not config_file.is_file() and (path / META_FILENAME).is_file():
        config_file = path / META_FILENAME
    if not config_file.is_file():
        raise FileNotFoundError(f"No config.json found at {path}.")
    config = json.loads(config_file.read_text())
    # A pipeline folder keeps the tokenizer config under vq_model/.
    if "codebook_sizes" not in config and (path / "vq_model" / "config.json").is_file():
        config = json.loads((path / "vq_model" / "config.json").read_text())
    if "codebook_sizes" not in config:
        raise ValueError(f"{config_file} has no 'codebook_sizes' field.")
    return [int(k) for k in config["codebook_sizes"]]


def _parse_int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from err


def _resolve_sizes(args, code_set: CodeSet) -> list[int] | None:
    if args.codebook_sizes is not None:
        return args.codebook_sizes
    if args.codebook_sizes_from is not None:
        return read_codebook_sizes(args.codebook_sizes_from)
    return code_set.codebook_sizes


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    subparsers = parser.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)

    def add_common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--codes", required=True, help="save_to_disk folder, .parquet or .npy file of codes.")
        sub.add_argument("--split", default=None, help="Split of a DatasetDict folder (default: train).")
        sub.add_argument("--labels", default=None, help="Labels .npy for a .npy codes file.")
        sub.add_argument("--codebook-sizes-from", default=None, help="VCQVQ model folder or config.json.")
        sub.add_argument("--codebook-sizes", type=_parse_int_list, default=None, help="Explicit K_t list: 2,4,8,...")
        sub.add_argument("--num-samples", type=int, default=None, help="N for the predicted cliff.")
        sub.add_argument("--include-flipped", action="store_true", help="Keep flip-augmented rows.")
        sub.add_argument("--output-dir", default=None, help="Write JSON and PNG here.")
        sub.add_argument("--title", default=None, help="Plot title.")

    entropy = subparsers.add_parser("entropy", help="Per-position conditional entropy and the entropy cliff.")
    add_common(entropy)
    entropy.add_argument("--threshold", type=float, default=0.05, help="Cliff threshold in bits (default 0.05).")
    entropy.add_argument("--max-rows", type=int, default=40, help="Positions shown in the printed table.")

    probe = subparsers.add_parser("probe", help="Linear probe on the first k tokens.")
    add_common(probe)
    probe.add_argument("--test-codes", default=None, help="Held-out codes (same formats); else a random split.")
    probe.add_argument("--test-split", default=None, help="Split of a DatasetDict --test-codes folder.")
    probe.add_argument("--test-labels", default=None, help="Labels .npy for a .npy --test-codes file.")
    probe.add_argument("--test-fraction", type=float, default=0.2, help="Held-out fraction without --test-codes.")
    probe.add_argument("--ks", type=_parse_int_list, default=None, help="k values (default 0,1,2,4,...,T + cliff).")
    probe.add_argument("--features", choices=("onehot", "embedding"), default="onehot")
    probe.add_argument("--vq-model", default=None, help="VCQVQ model folder for --features embedding.")
    probe.add_argument("--max-train-samples", type=int, default=None, help="Seeded subsample of the train rows.")
    probe.add_argument("--regularization", type=float, default=1.0, help="Inverse L2 strength C.")
    probe.add_argument("--max-iter", type=int, default=300)
    probe.add_argument("--seed", type=int, default=0)

    nll = subparsers.add_parser("nll", help="Prior NLL (bits/image) on training vs held-out codes: the gap.")
    add_common(nll)
    nll.add_argument("--prior", required=True, help="VCQPipeline folder or VCQForCausalLM folder.")
    nll.add_argument("--test-codes", required=True, help="Held-out codes (same formats).")
    nll.add_argument("--test-split", default=None, help="Split of a DatasetDict --test-codes folder.")
    nll.add_argument("--test-labels", default=None, help="Labels .npy for a .npy --test-codes file.")
    nll.add_argument("--unconditional", action="store_true", help="Condition on the null class, not the labels.")
    nll.add_argument("--max-sequences", type=int, default=None, help="Seeded subsample of each code set.")
    nll.add_argument("--num-train-images", type=int, default=None, help="N of the prior's training set.")
    nll.add_argument("--batch-size", type=int, default=256)
    nll.add_argument("--max-rows", type=int, default=40, help="Positions shown in the printed table.")
    nll.add_argument("--seed", type=int, default=0)

    copies = subparsers.add_parser("copies", help="Longest prefix shared with a training sequence; copy rate.")
    add_common(copies)
    copies.add_argument("--samples", required=True, help="Generated codes (e.g. sample.py's samples.npz).")
    copies.add_argument("--test-codes", default=None, help="Held-out codes: the rate for new real images.")
    copies.add_argument("--test-split", default=None, help="Split of a DatasetDict --test-codes folder.")

    nearest = subparsers.add_parser("nearest", help="Distance of each sample to its nearest training image.")
    nearest.add_argument("--samples", required=True, help="Images: an .npz with 'arr_0' (N, H, W, 3) uint8.")
    nearest.add_argument("--train-images", required=True, help="An .npz like --samples, or NAME:SPLIT (built-in).")
    nearest.add_argument("--heldout-images", default=None, help="Held-out real images (same forms): the reference.")
    nearest.add_argument("--features", default="fmnist-cnn", help="fmnist-cnn, effnet-lite0 or inception-v3.")
    nearest.add_argument("--resolution", type=int, default=None, help="Side of built-in data set images.")
    nearest.add_argument("--batch-size", type=int, default=250, help="Images per feature-extraction batch.")
    nearest.add_argument("--output-dir", default=None, help="Write nearest.json here.")


def _num_samples(args, code_set: CodeSet) -> int:
    if args.num_samples is not None:
        if args.num_samples < 1:
            raise ValueError(f"--num-samples = {args.num_samples} is out of range: it must be >= 1.")
        return args.num_samples
    return len(code_set.codes)


def _output_dir(args) -> Path | None:
    if args.output_dir is None:
        return None
    folder = Path(args.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def run_entropy(args) -> int:
    from .entropy import analyze_entropy, plot_entropy_profile

    code_set = load_code_set(args.codes, args.split, args.labels, args.include_flipped)
    sizes = _resolve_sizes(args, code_set)
    profile = analyze_entropy(
        code_set.codes, codebook_sizes=sizes, num_samples=_num_samples(args, code_set), threshold=args.threshold
    )
    print(profile.summary())
    print(profile.format_table(max_rows=args.max_rows))
    folder = _output_dir(args)
    if folder is not None:
        summary = profile.to_dict()
        summary["source"] = code_set.source
        (folder / "entropy.json").write_text(json.dumps(summary, indent=2) + "\n")
        plot_entropy_profile(profile, folder / "entropy.png", title=args.title)
        print(f"Wrote {folder / 'entropy.json'} and {folder / 'entropy.png'}")
    return 0


def _load_codebook(vq_model: str) -> np.ndarray:
    from ..modeling_vcq_vq import VCQVQModel

    model = VCQVQModel.from_pretrained(vq_model)
    return model.quantizer.get_codebook().detach().cpu().numpy()


def run_probe(args) -> int:
    from ..schedules import cliff_position
    from .probe import default_ks, linear_probe, plot_probe, split_train_test

    train = load_code_set(args.codes, args.split, args.labels, args.include_flipped)
    if train.labels is None:
        raise ValueError(f"{train.source} has no labels: the probe needs a 'label' column (or --labels for .npy).")
    sizes = _resolve_sizes(args, train)
    if args.test_codes is not None:
        test = load_code_set(args.test_codes, args.test_split, args.test_labels, args.include_flipped)
        if test.labels is None:
            raise ValueError(f"{test.source} has no labels.")
        train_codes, train_labels = np.asarray(train.codes), train.labels
        test_codes, test_labels = np.asarray(test.codes), test.labels
    else:
        train_rows, test_rows = split_train_test(len(train.codes), args.test_fraction, args.seed)
        codes = np.asarray(train.codes)
        train_codes, train_labels = codes[train_rows], train.labels[train_rows]
        test_codes, test_labels = codes[test_rows], train.labels[test_rows]
    if args.max_train_samples is not None and args.max_train_samples < len(train_codes):
        if args.max_train_samples < 2:
            raise ValueError(f"--max-train-samples = {args.max_train_samples} must be >= 2.")
        keep = np.sort(np.random.default_rng(args.seed).permutation(len(train_codes))[: args.max_train_samples])
        train_codes, train_labels = train_codes[keep], train_labels[keep]
    num_tokens = train_codes.shape[1]
    predicted = cliff_position(_num_samples(args, train), sizes) if sizes is not None else None
    ks = args.ks if args.ks is not None else default_ks(num_tokens, extra=[predicted])
    codebook = None
    if args.features == "embedding":
        if args.vq_model is None:
            raise ValueError("--features embedding needs --vq-model (the tokenizer whose codebook made the codes).")
        codebook = _load_codebook(args.vq_model)
    result = linear_probe(
        train_codes,
        train_labels,
        test_codes,
        test_labels,
        ks=ks,
        codebook_sizes=sizes,
        codebook=codebook,
        regularization=args.regularization,
        max_iter=args.max_iter,
        seed=args.seed,
    )
    result.extra.update({"predicted_cliff": predicted, "source": train.source})
    print(
        f"Linear probe ({result.feature_kind}): {result.num_train} train / {result.num_test} test rows, "
        f"{result.num_classes} classes (chance {1 / max(result.num_classes, 1):.3f}); predicted cliff: {predicted}"
    )
    print(result.format_table())
    folder = _output_dir(args)
    if folder is not None:
        (folder / "probe.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        plot_probe(result, folder / "probe.png", predicted_cliff=predicted, title=args.title)
        print(f"Wrote {folder / 'probe.json'} and {folder / 'probe.png'}")
    return 0


def load_prior(path: str | os.PathLike):
    """A `VCQForCausalLM` from its folder or from a pipeline folder's `transformer/`, in eval mode."""
    from ..modeling_vcq import VCQForCausalLM

    path = Path(path)
    if (path / "model_index.json").is_file():
        path = path / "transformer"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"No prior found at {path}: expected a VCQPipeline or VCQForCausalLM folder.")
    return VCQForCausalLM.from_pretrained(path).eval()


def _subsample(code_set: CodeSet, limit: int | None, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    codes, labels = np.asarray(code_set.codes), code_set.labels
    if limit is None or limit >= len(codes):
        return codes, labels
    if limit < 1:
        raise ValueError(f"--max-sequences = {limit} must be >= 1.")
    keep = np.sort(np.random.default_rng(seed).permutation(len(codes))[:limit])
    return codes[keep], None if labels is None else labels[keep]


def run_nll(args) -> int:
    from .memorization import generalization_gap, plot_generalization_gap

    train = load_code_set(args.codes, args.split, args.labels, args.include_flipped)
    test = load_code_set(args.test_codes, args.test_split, args.test_labels, args.include_flipped)
    if not args.unconditional and (train.labels is None or test.labels is None):
        source = train.source if train.labels is None else test.source
        raise ValueError(f"{source} has no labels: give labels or use --unconditional (null class).")
    num_train_images = args.num_train_images or args.num_samples or len(train.codes)
    train_codes, train_labels = _subsample(train, args.max_sequences, args.seed)
    test_codes, test_labels = _subsample(test, args.max_sequences, args.seed)
    if args.unconditional:
        train_labels = test_labels = None
    gap = generalization_gap(
        load_prior(args.prior),
        train_codes,
        test_codes,
        train_labels,
        test_labels,
        num_train_images=num_train_images,
        batch_size=args.batch_size,
    )
    print(gap.summary())
    print(gap.format_table(max_rows=args.max_rows))
    folder = _output_dir(args)
    if folder is not None:
        report = {**gap.to_dict(), "prior": str(args.prior), "source": train.source, "test_source": test.source}
        (folder / "nll.json").write_text(json.dumps(report, indent=2) + "\n")
        plot_generalization_gap(gap, folder / "nll.png", title=args.title)
        print(f"Wrote {folder / 'nll.json'} and {folder / 'nll.png'}")
    return 0


def run_copies(args) -> int:
    from .memorization import copy_statistics

    train = load_code_set(args.codes, args.split, args.labels, args.include_flipped)
    samples = load_code_set(args.samples)
    report = {"samples": copy_statistics(samples.codes, train.codes).to_dict(), "source": train.source}
    print(
        f"{len(samples.codes)} samples vs {len(train.codes)} training sequences: copy rate "
        f"{report['samples']['copy_rate']:.4f}, mean shared prefix {report['samples']['mean_shared_prefix']:.2f} "
        f"of {report['samples']['num_tokens']} tokens"
    )
    if args.test_codes is not None:
        test = load_code_set(args.test_codes, args.test_split, None, args.include_flipped)
        report["heldout"] = copy_statistics(test.codes, train.codes).to_dict()
        print(
            f"{len(test.codes)} held-out real sequences: copy rate {report['heldout']['copy_rate']:.4f}, mean shared "
            f"prefix {report['heldout']['mean_shared_prefix']:.2f}"
        )
    folder = _output_dir(args)
    if folder is not None:
        (folder / "copies.json").write_text(json.dumps(report, indent=2) + "\n")
        print(f"Wrote {folder / 'copies.json'}")
    return 0


def load_images(spec: str, resolution: int | None = None) -> np.ndarray:
    """Images `(N, H, W, 3)` uint8 from an `.npz` (`arr_0`, the ADM/sample.py format) or `NAME:SPLIT` (built-in)."""
    if spec.endswith(".npz"):
        if not Path(spec).is_file():
            raise FileNotFoundError(f"Images file {spec} does not exist.")
        with np.load(spec, allow_pickle=False) as archive:
            if "arr_0" not in archive:
                raise ValueError(f"{spec} has no 'arr_0' image array (it holds {sorted(archive.files)}).")
            return archive["arr_0"]
    if ":" not in spec:
        raise ValueError(f"Images {spec!r}: expected an .npz file or a built-in data set as NAME:SPLIT.")
    from ..data import load_builtin_dataset

    name, split = spec.split(":", 1)
    dataset = load_builtin_dataset(name, split, resolution=resolution)
    return np.stack([np.array(image.convert("RGB")) for image in dataset["image"]])


def run_nearest(args) -> int:
    from ..metrics import load_feature_extractor
    from .memorization import nearest_training_distances

    extractor = load_feature_extractor(args.features)

    def features(spec: str) -> np.ndarray:
        return extractor.extract(load_images(spec, args.resolution), batch_size=args.batch_size)[0]

    heldout = features(args.heldout_images) if args.heldout_images else None
    result = nearest_training_distances(
        features(args.samples), features(args.train_images), heldout, feature_name=args.features
    ).to_dict()
    line = (
        f"{result['num_samples']} samples: median distance to the nearest training image {result['sample_median']:.4g}"
    )
    if heldout is not None:
        line += (
            f"; held-out real images {result['heldout_median']:.4g} (ratio {result['median_ratio']:.3f}); samples "
            f"closer than the 1% quantile of held-out images: {result['close_rate_q01']:.4f}"
        )
    print(line)
    folder = _output_dir(args)
    if folder is not None:
        (folder / "nearest.json").write_text(json.dumps(result, indent=2) + "\n")
        print(f"Wrote {folder / 'nearest.json'}")
    return 0


COMMANDS = {"entropy": run_entropy, "probe": run_probe, "nll": run_nll, "copies": run_copies, "nearest": run_nearest}


def run_cli(args) -> int:
    if args.analysis not in COMMANDS:
        raise ValueError(f"Unknown analysis {args.analysis!r}; expected one of {sorted(COMMANDS)}.")
    return COMMANDS[args.analysis](args)
