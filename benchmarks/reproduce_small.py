#!/usr/bin/env python
"""Reproduce the paper's claims at small scale: VCQ (log schedule) vs the uniform codebook on Fashion-MNIST 32x32.

Runs the project's own scripts end to end, twice, with configurations that differ only in the tokenizer's
`schedule` field (`constant` = uniform K_max at every position, the paper's baseline; `log` = K_t from K_min to
K_max), then measures:

1. reconstruction of the official test split (MSE, PSNR, rFID with the Fashion-MNIST domain classifier) and the
   per-position code usage of the two tokenizers;
2. the per-position conditional entropy of both training code sets, predicted and observed cliffs, on one plot;
3. the first-k linear probe (k = 0..T) on both code sets;
4. two AR priors of identical size and budget: gFID / KID / precision / recall with the domain extractor, without
   guidance and at the best guidance scale of a small sweep, from the same number of samples;
5. optionally (`--sweep`), tokenizer-level results (reconstruction, entropy, probe) for more schedules and K_min.

Every stage writes its outputs under `--output_dir/<stage>/` and a `<stage>.json` result; a rerun skips finished
stages, and an interrupted training resumes from its last checkpoint (`--resume_from_checkpoint latest`). Training
pairs run as two processes with one thread each, which is faster than one 2-thread process on 2 cores.

    python benchmarks/reproduce_small.py --output_dir runs/reproduce_small          # the full study (~1-2 h, 2 CPUs)
    python benchmarks/reproduce_small.py --output_dir /tmp/smoke --smoke            # same code path, tiny settings

`--report docs/reproduction` writes the tables (results.md), results.json and the plots there.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch


REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


@dataclass
class StudySettings:
    """Everything that defines one pass of the study. The two arms differ only in the tokenizer's `schedule`."""

    dataset: str = "fashion-mnist"
    train_split: str = "train_full"  # the official 60,000 training images (N for the cliff)
    test_split: str = "test"  # the official 10,000 test images: evaluation only
    resolution: int = 32
    max_train_samples: int | None = None
    max_test_samples: int | None = None
    vq_preset: str = "small-32px"
    vq_overrides: dict = field(default_factory=dict)
    k_min: int = 2
    arms: tuple[str, ...] = ("constant", "log")
    tokenizer_steps: int = 900
    tokenizer_batch_size: int = 64
    tokenizer_learning_rate: float = 1e-3
    ar_preset: str = "small"
    ar_overrides: dict = field(default_factory=dict)
    ar_steps: int = 1500
    ar_batch_size: int = 64
    ar_learning_rate: float = 1e-3
    checkpointing_steps: int = 150
    num_samples: int = 5000
    sweep_samples: int = 1000
    guidance_scales: tuple[float, ...] = (1.5, 2.0, 3.0)
    sample_batch_size: int = 500
    probe_max_train: int = 20000
    sweep_schedules: tuple[tuple[str, int], ...] = (("linear", 2), ("cosine", 2), ("log", 16))
    seed: int = 0


SMOKE = StudySettings(
    max_train_samples=96,
    max_test_samples=64,
    vq_overrides=dict(
        encoder_hidden_size=32,
        decoder_hidden_size=32,
        encoder_num_layers=1,
        decoder_num_layers=1,
        encoder_num_heads=2,
        decoder_num_heads=2,
        num_tokens=8,
        codebook_size=64,
    ),
    tokenizer_steps=4,
    tokenizer_batch_size=16,
    ar_preset="tiny",
    ar_steps=4,
    ar_batch_size=16,
    checkpointing_steps=2,
    num_samples=40,
    sweep_samples=40,
    guidance_scales=(2.0,),
    sample_batch_size=20,
    probe_max_train=96,
    sweep_schedules=(("linear", 2),),
)


# ----------------------------------------------------------------------------------------------------- stage runner
class Study:
    def __init__(self, output_dir: Path, settings: StudySettings, jobs: int, in_process: bool = False, log=print):
        self.output_dir = output_dir
        self.settings = settings
        self.jobs = jobs
        self.in_process = in_process
        self._cache: dict = {}  # test images, reconstructions and feature sets, shared by the stages of one run
        self.log = log
        output_dir.mkdir(parents=True, exist_ok=True)
        settings_path = output_dir / "settings.json"
        current = json.loads(json.dumps(asdict(settings)))
        if settings_path.exists():
            saved = json.loads(settings_path.read_text())
            if saved != current:
                raise ValueError(
                    f"{output_dir} holds a study run with other settings ({settings_path}); use another --output_dir."
                )
        else:
            settings_path.write_text(json.dumps(current, indent=2))

    def stage(self, name: str, fn, *args):
        """Run `fn(*args)` unless `<name>.json` exists; store its JSON result and wall time."""
        result_path = self.output_dir / f"{name}.json"
        if result_path.exists():
            self.log(f"[skip] {name}: done ({result_path})")
            return json.loads(result_path.read_text())
        self.log(f"[run ] {name}")
        start = time.perf_counter()
        result = fn(*args)
        result["wall_time_s"] = round(time.perf_counter() - start, 1)
        result_path.write_text(json.dumps(result, indent=2))
        self.log(f"[done] {name} in {result['wall_time_s']} s")
        return result

    def run_scripts(self, commands: list[list[str]]) -> None:
        """Run example scripts, `self.jobs` at a time, one thread each; raise if any fails (its log is kept).

        With `in_process`, each script's `main(parse_args(argv))` runs in this process instead, one after the other
        (no interpreter start-up per script: the smoke mode's budget is dominated by it)."""
        if self.in_process:
            for command in commands:
                run_example_in_process(command[0], command[1:])
            return
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        pending = list(commands)
        while pending:
            batch, pending = pending[: self.jobs], pending[self.jobs :]
            running = []
            for command in batch:
                output_path = Path(command[command.index("--output_dir") + 1])
                log_path = output_path.with_name(output_path.name + ".log")  # not with_suffix: "cfg1.5" has a dot
                log_path.parent.mkdir(parents=True, exist_ok=True)
                handle = open(log_path, "a")
                running.append(
                    (
                        subprocess.Popen([sys.executable, *command], stdout=handle, stderr=handle, env=env),
                        handle,
                        log_path,
                    )
                )
            for process, handle, log_path in running:
                process.wait()
                handle.close()
                if process.returncode != 0:
                    tail = "".join(log_path.read_text().splitlines(keepends=True)[-25:])
                    raise RuntimeError(
                        f"{' '.join(command)} failed (exit {process.returncode}); log {log_path}:\n{tail}"
                    )

    # ------------------------------------------------------------------------------------------------ paths
    def tokenizer_dir(self, arm: str) -> Path:
        return self.output_dir / f"tokenizer-{arm}"

    def codes_dir(self, arm: str, split: str) -> Path:
        return self.output_dir / f"codes-{arm}-{split}"

    def pipeline_dir(self, arm: str) -> Path:
        return self.output_dir / f"ar-{arm}"

    def training_flags(self, batch_size: int, steps: int, learning_rate: float) -> list[str]:
        """Flags shared by both training scripts: budget, cosine schedule with 5% warm-up, resumable checkpoints."""
        return [
            "--train_batch_size", str(batch_size), "--max_train_steps", str(steps),
            "--learning_rate", str(learning_rate), "--lr_scheduler", "cosine",
            "--lr_warmup_steps", str(max(1, steps // 20)),
            "--checkpointing_steps", str(self.settings.checkpointing_steps), "--checkpoints_total_limit", "1",
            "--resume_from_checkpoint", "latest", "--validation_steps", str(10**9), "--seed", str(self.settings.seed),
        ]  # fmt: skip

    # ------------------------------------------------------------------------------------------------ stages
    def train_tokenizers(self, arms: list[tuple[str, str, int]]) -> dict:
        s = self.settings
        commands = []
        for arm, schedule, k_min in arms:
            if (self.tokenizer_dir(arm) / "model.safetensors").exists():
                continue
            overrides = {**s.vq_overrides, "schedule": schedule, "k_min": k_min}
            commands.append(
                [
                    str(EXAMPLES / "train_tokenizer.py"),
                    "--dataset_name",
                    s.dataset,
                    "--split",
                    s.train_split,
                    "--resolution",
                    str(s.resolution),
                    "--model_config",
                    s.vq_preset,
                    "--config_overrides",
                    *[f"{key}={json.dumps(value)}" for key, value in overrides.items()],
                    "--random_flip",
                    *self.training_flags(s.tokenizer_batch_size, s.tokenizer_steps, s.tokenizer_learning_rate),
                    "--usage_eval_samples",
                    "2048",
                    "--output_dir",
                    str(self.tokenizer_dir(arm)),
                    *(["--max_train_samples", str(s.max_train_samples)] if s.max_train_samples else []),
                ]
            )
        self.run_scripts(commands)
        return {arm: json.loads((self.tokenizer_dir(arm) / "training_summary.json").read_text()) for arm, _, _ in arms}

    def extract(self, arms: list[str]) -> dict:
        s = self.settings
        commands = []
        for arm in arms:
            for split, limit in ((s.train_split, s.max_train_samples), (s.test_split, s.max_test_samples)):
                if (self.codes_dir(arm, split) / "vcq_meta.json").exists():
                    continue
                commands.append(
                    [
                        str(EXAMPLES / "extract_codes.py"),
                        "--vq_model_path",
                        str(self.tokenizer_dir(arm)),
                        "--dataset_name",
                        s.dataset,
                        "--split",
                        split,
                        "--batch_size",
                        "500",
                        "--output_dir",
                        str(self.codes_dir(arm, split)),
                        "--overwrite",
                        *(["--max_train_samples", str(limit)] if limit else []),
                    ]
                )
        self.run_scripts(commands)
        return {arm: {"train": len(load_codes(self.codes_dir(arm, s.train_split))[0])} for arm in arms}

    def _memo(self, key, compute):
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def test_images(self) -> torch.Tensor:
        """The evaluation split (`max_test_samples` applied) as (N, 3, H, W) floats in [0, 1]."""
        from vcq_hf import load_builtin_dataset

        def load() -> torch.Tensor:
            s = self.settings
            dataset = load_builtin_dataset(s.dataset, s.test_split, resolution=s.resolution)
            if s.max_test_samples:
                dataset = dataset.select(range(min(s.max_test_samples, len(dataset))))
            pixels = np.stack([np.array(image.convert("RGB")) for image in dataset["image"]])
            return torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255.0

        return self._memo("test_images", load)

    def test_reconstructions(self, arm: str) -> torch.Tensor:
        """`test_images()` encoded and decoded by the arm's tokenizer, (N, 3, H, W) in [0, 1]."""
        from vcq_hf import VCQVQModel

        def reconstruct() -> torch.Tensor:
            model = VCQVQModel.from_pretrained(self.tokenizer_dir(arm)).eval()
            reconstructions = []
            with torch.no_grad():
                for batch in self.test_images().split(500):
                    codes = model.encode(batch * 2.0 - 1.0).codes
                    reconstructions.append((model.decode(codes).sample.clamp(-1, 1) + 1) / 2)
            return torch.cat(reconstructions)

        return self._memo(("reconstructions", arm), reconstruct)

    def features(self, key, images) -> tuple[np.ndarray, np.ndarray | None]:
        """FMNIST-CNN features and logits of `images()` (a callable), computed once per `key` in a run."""
        from vcq_hf.metrics import FashionMNISTFeatureExtractor

        extractor = self._memo("extractor", FashionMNISTFeatureExtractor)
        return self._memo(("features", key), lambda: extractor.extract(images(), batch_size=500))

    def sample_features(self, arm: str, guidance_scale: float, num_samples: int):
        path = self.sample_path(arm, guidance_scale, num_samples)
        return self.features(str(path), lambda: np.load(path)["arr_0"])

    def reconstruction(self, arm: str) -> dict:
        """Test-split MSE / PSNR (pixels in [0, 1]) and rFID-FMNIST-CNN of reconstructions vs originals."""
        from vcq_hf.metrics import compute_generation_metrics

        originals, reconstructions = self.test_images(), self.test_reconstructions(arm)
        mse = torch.mean((originals - reconstructions) ** 2).item()
        real, _ = self.features("test", self.test_images)
        fake, _ = self.features(("reconstructions", arm), lambda: reconstructions)
        metrics = compute_generation_metrics(
            real, fake, extractor_name="FMNIST-CNN", kid_subset_size=min(1000, len(real))
        )
        save_grid(originals[:16], reconstructions[:16], self.output_dir / f"reconstruction-{arm}.png")
        return {
            "mse": mse,
            "psnr": 10 * math.log10(1.0 / mse),
            "rFID-FMNIST-CNN": metrics["FID-FMNIST-CNN"],
            "num_images": len(originals),
        }

    def entropy(self, arms: list[str]) -> dict:
        from vcq_hf.analysis import analyze_entropy

        result = {}
        profiles = {}
        for arm in arms:
            codes, _, meta = load_codes(self.codes_dir(arm, self.settings.train_split))
            profile = analyze_entropy(codes, codebook_sizes=meta["codebook_sizes"])
            profiles[arm] = profile
            result[arm] = {
                "conditional_entropy_bits": profile.conditional_entropy.round(4).tolist(),
                "distinct_prefixes": profile.distinct_prefixes.tolist(),
                "observed_cliff": profile.observed_cliff,
                "predicted_cliff": profile.predicted_cliff,
                "codebook_sizes": list(meta["codebook_sizes"]),
                "num_sequences": profile.num_sequences,
                "total_entropy_bits": float(profile.conditional_entropy.sum()),
            }
        plot_entropy_curves(profiles, self.output_dir / "entropy.png")
        return result

    def probe(self, arms: list[str]) -> dict:
        from vcq_hf.analysis import linear_probe

        s = self.settings
        result = {}
        for arm in arms:
            train_codes, train_labels, meta = load_codes(self.codes_dir(arm, s.train_split))
            test_codes, test_labels, _ = load_codes(self.codes_dir(arm, s.test_split))
            rng = np.random.default_rng(s.seed)
            keep = rng.permutation(len(train_codes))[: s.probe_max_train]
            ks = list(range(0, train_codes.shape[1] + 1))
            probe = linear_probe(
                train_codes[keep],
                train_labels[keep],
                test_codes,
                test_labels,
                ks=ks,
                codebook_sizes=meta["codebook_sizes"],
                seed=s.seed,
            )
            result[arm] = {
                "ks": probe.ks,
                "test_accuracy": probe.test_accuracy,
                "train_accuracy": probe.train_accuracy,
                "num_train": probe.num_train,
                "num_test": probe.num_test,
            }
        plot_probe_curves(result, self.output_dir / "probe.png")
        return result

    def train_priors(self, arms: list[str]) -> dict:
        s = self.settings
        commands = []
        for arm in arms:
            if (self.pipeline_dir(arm) / "model_index.json").exists():
                continue
            commands.append(
                [
                    str(EXAMPLES / "train_ar.py"),
                    "--codes_dir",
                    str(self.codes_dir(arm, s.train_split)),
                    "--model_config",
                    s.ar_preset,
                    *(
                        ["--config_overrides", *[f"{k}={json.dumps(v)}" for k, v in s.ar_overrides.items()]]
                        if s.ar_overrides
                        else []
                    ),
                    *self.training_flags(s.ar_batch_size, s.ar_steps, s.ar_learning_rate),
                    "--output_dir",
                    str(self.pipeline_dir(arm)),
                ]
            )
        self.run_scripts(commands)
        result = {}
        for arm in arms:
            summary_path = self.pipeline_dir(arm) / "training_summary.json"
            result[arm] = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        return result

    def sample_path(self, arm: str, guidance_scale: float, num_samples: int) -> Path:
        return self.output_dir / f"samples-{arm}-cfg{guidance_scale:g}-n{num_samples}" / "samples.npz"

    def sample(self, requests: list[tuple[str, float, int]]) -> None:
        """Draw (arm, guidance scale, number of images) sample sets with sample.py, skipping finished ones."""
        commands = []
        for arm, guidance_scale, num_samples in dict.fromkeys(requests):
            path = self.sample_path(arm, guidance_scale, num_samples)
            if path.exists():
                continue
            commands.append(
                [
                    str(EXAMPLES / "sample.py"),
                    "--pipeline_path",
                    str(self.pipeline_dir(arm)),
                    "--num_samples",
                    str(num_samples),
                    "--guidance_scale",
                    str(guidance_scale),
                    "--batch_size",
                    str(self.settings.sample_batch_size),
                    "--seed",
                    str(self.settings.seed),
                    "--no_png",
                    "--output_dir",
                    str(path.parent),
                ]
            )
        self.run_scripts(commands)

    def generation(self, arms: list[str]) -> dict:
        """gFID etc. without guidance and at the best guidance scale of a small sweep (chosen by FID on
        `sweep_samples` images), each from `num_samples` images, against the official test split."""
        from vcq_hf.metrics import compute_generation_metrics

        s = self.settings
        real, _ = self.features("test", self.test_images)

        def score(arm: str, guidance_scale: float, num_samples: int) -> dict:
            fake, logits = self.sample_features(arm, guidance_scale, num_samples)
            return compute_generation_metrics(
                real,
                fake,
                fake_logits=logits,
                extractor_name="FMNIST-CNN",
                kid_subset_size=min(1000, len(fake)),
                seed=s.seed,
            )

        scales = [1.0, *s.guidance_scales]
        self.sample([(arm, scale, s.sweep_samples) for arm in arms for scale in scales])
        sweeps = {arm: {f"{scale:g}": score(arm, scale, s.sweep_samples) for scale in scales} for arm in arms}
        best = {arm: float(min(sweeps[arm], key=lambda key: sweeps[arm][key]["FID-FMNIST-CNN"])) for arm in arms}
        self.sample(
            [request for arm in arms for request in ((arm, 1.0, s.num_samples), (arm, best[arm], s.num_samples))]
        )
        result = {
            arm: {
                "sweep": sweeps[arm],
                "no_guidance": score(arm, 1.0, s.num_samples),
                "best_guidance_scale": best[arm],
                "best_guidance": score(arm, best[arm], s.num_samples),
            }
            for arm in arms
        }
        save_sample_rows(
            {arm: self.sample_path(arm, best[arm], s.num_samples) for arm in arms}, self.output_dir / "samples.png"
        )
        return result

    def prior_fidelity(self, arms: list[str]) -> dict:
        """How well each prior models its own tokenizer's code distribution, separated from the decoder's blur:
        metrics of the final samples against the tokenizer's reconstructions of the test split (instead of the
        test images themselves)."""
        from vcq_hf.metrics import compute_generation_metrics

        s = self.settings
        generation = json.loads((self.output_dir / "generation.json").read_text())
        result = {}
        for arm in arms:
            reference, _ = self.features(("reconstructions", arm), lambda arm=arm: self.test_reconstructions(arm))
            result[arm] = {}
            for label, scale in (("no_guidance", 1.0), ("best_guidance", generation[arm]["best_guidance_scale"])):
                fake, logits = self.sample_features(arm, scale, s.num_samples)
                result[arm][label] = compute_generation_metrics(
                    reference, fake, fake_logits=logits, extractor_name="FMNIST-CNN",
                    kid_subset_size=min(1000, len(fake)), seed=s.seed,
                )  # fmt: skip
        return result


# ---------------------------------------------------------------------------------------------------- helpers
def run_example_in_process(script: str, argv: list[str]) -> None:
    """`main(parse_args(argv))` of an example script, imported from its path."""
    import importlib.util

    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(f"vcq_example_{Path(script).stem}", script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    module.main(module.parse_args(argv))


def load_codes(codes_dir: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """Codes (N, T) int64, labels (N,) and the metadata written by extract_codes.py."""
    from datasets import load_from_disk

    dataset = load_from_disk(str(codes_dir)).with_format("numpy")
    meta = json.loads((codes_dir / "vcq_meta.json").read_text())
    return np.asarray(dataset["codes"], dtype=np.int64), np.asarray(dataset["label"], dtype=np.int64), meta


def save_grid(top: torch.Tensor, bottom: torch.Tensor, path: Path) -> None:
    from PIL import Image

    rows = [torch.cat(list(batch), dim=2) for batch in (top, bottom)]  # (3, H, n*W)
    grid = (torch.cat(rows, dim=1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(path)


def save_sample_rows(npz_paths: dict[str, Path], path: Path, per_class: int = 4) -> None:
    """One block per arm: 10 class rows x `per_class` samples (sample.py assigns class i % num_classes)."""
    from PIL import Image, ImageDraw

    blocks = []
    for arm, npz_path in npz_paths.items():
        data = np.load(npz_path)
        images, labels = data["arr_0"], data["labels"]
        rows = []
        for label in np.unique(labels)[:10]:
            picks = images[labels == label][:per_class]
            rows.append(np.concatenate(list(picks), axis=1))
        block = Image.fromarray(np.concatenate(rows, axis=0)).resize(
            (rows[0].shape[1] * 2, len(rows) * images.shape[1] * 2), Image.NEAREST
        )
        canvas = Image.new("RGB", (block.width, block.height + 14), "white")
        canvas.paste(block, (0, 14))
        ImageDraw.Draw(canvas).text((2, 1), arm, fill="black")
        blocks.append(canvas)
    out = Image.new("RGB", (sum(b.width for b in blocks) + 8 * (len(blocks) - 1), blocks[0].height), "white")
    x = 0
    for block in blocks:
        out.paste(block, (x, 0))
        x += block.width + 8
    out.save(path)


def plot_entropy_curves(profiles: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.5), dpi=120)
    for (arm, profile), color in zip(
        profiles.items(), ["tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange"]
    ):
        positions = np.arange(1, profile.num_tokens + 1)
        axis.plot(positions, profile.conditional_entropy, color=color, marker="o", ms=3, label=f"{arm}: H(x_t | x_<t)")
        axis.plot(positions, np.log2(profile.codebook_sizes), color=color, ls=":", label=f"{arm}: log2 K_t")
        if profile.predicted_cliff:
            axis.axvline(profile.predicted_cliff, color=color, ls="--", alpha=0.6, label=f"{arm}: predicted cliff")
        if profile.observed_cliff:
            axis.axvline(profile.observed_cliff, color=color, ls="-.", alpha=0.6, label=f"{arm}: observed cliff")
    axis.set_xlabel("position t (1-based)")
    axis.set_ylabel("bits")
    axis.set_title(f"Per-position conditional entropy of the training codes (N = {profile.num_sequences:,})")
    axis.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def plot_probe_curves(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4), dpi=120)
    for arm, values in result.items():
        axis.plot(values["ks"], np.array(values["test_accuracy"]) * 100, marker="o", ms=3, label=arm)
    axis.set_xlabel("k (leading tokens)")
    axis.set_ylabel("test top-1 (%)")
    axis.set_title("Linear probe on the first k tokens (one-hot features)")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def write_report(results: dict, settings: StudySettings, output_dir: Path, report_dir: Path) -> None:
    """results.json, results.md (every table) and the plots, copied to `report_dir`."""
    import shutil

    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "results.json").write_text(json.dumps({"settings": asdict(settings), **results}, indent=2))
    for name in ["entropy.png", "probe.png", "samples.png", "reconstruction-constant.png", "reconstruction-log.png"]:
        if (output_dir / name).exists():
            shutil.copy(output_dir / name, report_dir / name)
    lines = ["# Results tables (generated by benchmarks/reproduce_small.py)", ""]
    arms = list(settings.arms)
    recon = {arm: results.get(f"reconstruction-{arm}") for arm in arms}
    if all(recon.values()):
        lines += [
            "## Reconstruction (official test split)",
            "",
            "| tokenizer | MSE | PSNR (dB) | rFID-FMNIST-CNN | mean codes used / position | train wall (s) |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for arm in arms:
            summary = results["tokenizers"][arm]
            used = summary["code_usage"]["codes_used_per_position"]
            mean_used = f"{np.mean(used):.1f}"
            lines.append(
                f"| {arm} | {recon[arm]['mse']:.5f} | {recon[arm]['psnr']:.2f} | {recon[arm]['rFID-FMNIST-CNN']:.2f} "
                f"| {mean_used} | {summary.get('wall_time_s', 'n/a')} |"
            )
        lines.append("")
    if "entropy" in results:
        lines += [
            "## Entropy cliff (training codes)",
            "",
            "| tokenizer | predicted cliff | observed cliff (H < 0.05 bit) "
            "| total H (bits) | H_t of first 8 positions |",
            "| --- | --- | --- | --- | --- |",
        ]
        for arm in arms:
            e = results["entropy"][arm]
            first = ", ".join(f"{h:.2f}" for h in e["conditional_entropy_bits"][:8])
            lines.append(
                f"| {arm} | {e['predicted_cliff']} | {e['observed_cliff']} | {e['total_entropy_bits']:.2f} | {first} |"
            )
        lines.append("")
    if "probe" in results:
        ks = results["probe"][arms[0]]["ks"]
        lines += [
            "## Linear probe on the first k tokens (test top-1, %)",
            "",
            "| k | " + " | ".join(arms) + " |",
            "| --- |" + " --- |" * len(arms),
        ]
        for index, k in enumerate(ks):
            lines.append(
                f"| {k} | "
                + " | ".join(f"{results['probe'][arm]['test_accuracy'][index] * 100:.1f}" for arm in arms)
                + " |"
            )
        lines.append("")
    if "generation" in results:
        lines += [
            "## Generation (FMNIST-CNN features, vs the official test split)",
            "",
            "| prior on | guidance | samples | gFID | KID x1e3 | precision | recall | IS |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for arm in arms:
            g = results["generation"][arm]
            for label, m in (
                ("none (1.0)", g["no_guidance"]),
                (f"best ({g['best_guidance_scale']:g})", g["best_guidance"]),
            ):
                lines.append(
                    f"| {arm} | {label} | {int(m['num_fake'])} | {m['FID-FMNIST-CNN']:.2f} | "
                    f"{m['KID-FMNIST-CNN'] * 1e3:.2f} | {m['precision-FMNIST-CNN']:.3f} | "
                    f"{m['recall-FMNIST-CNN']:.3f} | {m['IS-FMNIST-CNN']:.2f} |"
                )
        lines += [
            "",
            "Guidance sweep (gFID on the sweep sample size):",
            "",
            "| prior on | " + " | ".join(results["generation"][arms[0]]["sweep"]) + " |",
            "| --- |" + " --- |" * len(results["generation"][arms[0]]["sweep"]),
        ]
        for arm in arms:
            sweep = results["generation"][arm]["sweep"]
            lines.append(f"| {arm} | " + " | ".join(f"{m['FID-FMNIST-CNN']:.2f}" for m in sweep.values()) + " |")
        lines.append("")
    if "prior_fidelity" in results:
        lines += [
            "## Prior fidelity: samples vs the tokenizer's own test reconstructions (FMNIST-CNN)",
            "",
            "| prior on | guidance | FID vs reconstructions | precision | recall |",
            "| --- | --- | --- | --- | --- |",
        ]
        for arm in arms:
            for label, m in results["prior_fidelity"][arm].items():
                if isinstance(m, dict):
                    lines.append(
                        f"| {arm} | {label.replace('_', ' ')} | {m['FID-FMNIST-CNN']:.2f} | "
                        f"{m['precision-FMNIST-CNN']:.3f} | {m['recall-FMNIST-CNN']:.3f} |"
                    )
        lines.append("")
    if "sweep" in results:
        lines += [
            "## Schedule sweep (tokenizer level)",
            "",
            "| schedule | K_min | PSNR (dB) | rFID | predicted cliff | observed cliff | probe k=1 | probe k=4 | probe k=T |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for row in results["sweep"]["rows"].values():
            lines.append(
                f"| {row['schedule']} | {row['k_min']} | {row['psnr']:.2f} | {row['rFID']:.2f} | {row['predicted_cliff']} "
                f"| {row['observed_cliff']} | {row['probe'][1] * 100:.1f} | {row['probe'][4] * 100:.1f} | {row['probe'][-1] * 100:.1f} |"
            )
        lines.append("")
    lines += ["## Wall time per stage (s)", "", "| stage | wall (s) |", "| --- | --- |"]
    for name, value in results.items():
        if isinstance(value, dict) and "wall_time_s" in value:
            lines.append(f"| {name} | {value['wall_time_s']} |")
    (report_dir / "results.md").write_text("\n".join(lines) + "\n")


def run_study(
    output_dir: Path,
    settings: StudySettings,
    jobs: int,
    sweep: bool,
    report_dir: Path | None,
    in_process: bool = False,
) -> dict:
    study = Study(output_dir, settings, jobs, in_process=in_process)
    arms = list(settings.arms)
    results = {}
    results["tokenizers"] = study.stage(
        "tokenizers", study.train_tokenizers, [(arm, arm, settings.k_min) for arm in arms]
    )
    results["codes"] = study.stage("codes", study.extract, arms)
    for arm in arms:
        results[f"reconstruction-{arm}"] = study.stage(f"reconstruction-{arm}", study.reconstruction, arm)
    results["entropy"] = study.stage("entropy", study.entropy, arms)
    results["probe"] = study.stage("probe", study.probe, arms)
    results["priors"] = study.stage("priors", study.train_priors, arms)
    results["generation"] = study.stage("generation", study.generation, arms)
    results["prior_fidelity"] = study.stage("prior_fidelity", study.prior_fidelity, arms)
    if sweep:
        results["sweep"] = study.stage("sweep", run_sweep, study)
    if report_dir is not None:
        write_report(results, settings, output_dir, report_dir)
    return results


def run_sweep(study: Study) -> dict:
    """Tokenizer-level comparison of more schedules / K_min: reconstruction, cliffs and the probe."""
    names = [(f"{schedule}-kmin{k_min}", schedule, k_min) for schedule, k_min in study.settings.sweep_schedules]
    study.stage("sweep-tokenizers", study.train_tokenizers, names)
    study.stage("sweep-codes", study.extract, [name for name, _, _ in names])
    entropy = study.stage("sweep-entropy", study.entropy, [name for name, _, _ in names])
    probe = study.stage("sweep-probe", study.probe, [name for name, _, _ in names])
    rows = {}
    for name, schedule, k_min in names:
        recon = study.stage(f"reconstruction-{name}", study.reconstruction, name)
        rows[name] = {
            "schedule": schedule,
            "k_min": k_min,
            "psnr": recon["psnr"],
            "rFID": recon["rFID-FMNIST-CNN"],
            "predicted_cliff": entropy[name]["predicted_cliff"],
            "observed_cliff": entropy[name]["observed_cliff"],
            "probe": probe[name]["test_accuracy"],
        }
    return {"rows": rows}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", type=Path, default=Path("runs/reproduce_small"))
    parser.add_argument("--smoke", action="store_true", help="Tiny settings, same code path (CI, < 2 min).")
    parser.add_argument(
        "--in_process", action="store_true", help="Run the example scripts in this process (default with --smoke)."
    )
    parser.add_argument("--jobs", type=int, default=2, help="Training/extraction processes run at once.")
    parser.add_argument("--sweep", action="store_true", help="Also train tokenizers for the schedule sweep.")
    parser.add_argument("--report", type=Path, default=None, help="Write results.md/json and plots here.")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs = {args.jobs} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    settings = SMOKE if args.smoke else StudySettings()
    start = time.perf_counter()
    results = run_study(
        args.output_dir, settings, args.jobs, args.sweep, args.report, in_process=args.in_process or args.smoke
    )
    print(f"study finished in {time.perf_counter() - start:.0f} s; results in {args.output_dir}")
    return results


if __name__ == "__main__":
    main()
