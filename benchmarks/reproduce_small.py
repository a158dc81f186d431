#!/usr/bin/env python
"""Study v2: test VCQ's claims at small scale, with the prior in the memorisation regime the paper describes.

Arms (Fashion-MNIST 32x32, T = 32, K_max = 1024): the uniform codebook (`constant` schedule) and VCQ's log, linear
and cosine schedules from K_min = 2. Every arm gets a tokenizer (one recipe, `tokenizer_recipe()`) and priors of
identical architecture, steps, seed and data order; the arms differ in the tokenizer's `schedule` field only.

Stages, in run order (each one resumable; see below):

1. `calibrate`: a few real training steps of the tokenizer and of each prior size, timed from their logs, plus
   timed sampling, encoding, likelihood and feature extraction; the plan of every later stage is printed from these
   costs before anything long runs.
2. Tokenizers for every arm (seed 0), their codes, and per arm: reconstruction (PSNR, rFID in every feature space),
   the entropy cliff at every training-set size N, the first-k probe (one-hot and codebook-embedding features).
3. Main cells: one prior per arm (N = 60k, `small`). Per cell: prior NLL in bits/image on its training codes vs the
   held-out test codes (per position and summed: the generalisation gap), a guidance sweep extended until its best
   scale is not at its upper edge, then gFID / KID / precision / recall / IS / classifier accuracy without guidance
   and at the best scale in every feature space (FMNIST-CNN and EfficientNet-Lite0), the copy rate and longest
   shared prefix of the generated codes (with the held-out test codes as the reference rate), nearest-training-image
   distances of the samples in feature space (against those of held-out images), FID against the tokenizer's own
   reconstructions (prior fidelity).
4. `best-arm`: the VCQ arm with the lowest gFID without guidance in the main cells (or `--best_vcq_arm`).
5. Regime cells for the uniform and the best VCQ arm: N in {60k, 5k, 1k} x prior {tiny, small} x prior length
   (the long runs only at small N) — where the uniform prior should start to memorise.
6. Seed cells: the uniform and the best VCQ arm with more seeds (tokenizer + prior), reported as mean ± spread.
7. Emoji cells: a second domain (`vcq data build emoji`), uniform vs the best VCQ arm, same measures.
8. Report (`--report DIR`): results.md (every table), results.json, plots (entropy per position, NLL gap per
   position, probe curves, sample grids per arm).

Every stage writes `<output_dir>/<stage>.json` and is skipped on a rerun; an interrupted training resumes from its
last checkpoint; sample sets and feature sets are cached on disk. `settings.json` pins the settings (including the
tokenizer recipe) of a study folder. Training jobs run as `--jobs` processes with one thread each.

Already-trained tokenizers can be adopted instead of trained (`--tokenizer_dirs uniform=DIR,linear=DIR`, and
`emoji:uniform=DIR` for another domain than Fashion-MNIST: saved `VCQVQModel` folders with their `training_summary.json`, e.g. `benchmarks/tokenizer_v2.py`'s `<arm>/tokenizer`); each
folder's config is checked against its arm (schedule, K_max, T, K_min) and its path and training summary are pinned
into `settings.json`, the stage results and the report. Priors train for fixed `--prior_steps`, or, with
`--prior_plateau_chunk C`, until their train NLL stops falling (chunks of C steps at a constant learning rate, the arms
of a setting in lockstep, `--prior_steps` as the cap).

    python benchmarks/reproduce_small.py --output_dir runs/study-v2 --report docs/reproduction/v2   # full study
    python benchmarks/reproduce_small.py --output_dir runs/study-v2 --plan_only                     # only the plan
    python benchmarks/reproduce_small.py --output_dir /tmp/smoke --smoke                            # CI: every path
    python benchmarks/reproduce_small.py --output_dir runs/slice --jobs 1 --arms uniform,linear \\
        --best_vcq_arm linear --groups main,regime --train_sizes 1000,5000 --max_train_images 5000 \\
        --priors tiny --seeds 0 --no_emoji --feature_spaces fmnist-cnn \\
        --prior_steps 6000 --prior_plateau_chunk 1000 \\
        --tokenizer_dirs uniform=runs/tv2/uniform/tokenizer,linear=runs/tv2/linear/tokenizer       # a cheap slice
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch


REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
GROUPS = ("main", "regime", "seeds", "emoji")


# --------------------------------------------------------------------------------------------------- the recipe
@dataclass(frozen=True)
class TokenizerRecipe:
    """How every tokenizer of the study is trained: a `VCQVQConfig` preset (+ overrides) and `train_tokenizer.py`
    flags. The study adds only data, schedule, seed, step budget, batch size and checkpointing; everything else
    (losses, learning rate and its schedule, EMA, ...) is the script's default unless `extra_args` sets it."""

    vq_preset: str
    vq_overrides: dict
    steps: int
    batch_size: int
    extra_args: tuple[str, ...]
    source: str


# What tokenizer v2's 40-minute budget reached on this machine, load ~2 (issue 12's runs of 2026-12-01, batch 32:
# uniform 6,966, linear 6,908 steps; the loaded runs before reached 1,378 / 1,375).
TOKENIZER_V2_STEPS = 6900


def tokenizer_recipe() -> TokenizerRecipe:
    """The one place the study reads its tokenizer recipe from: tokenizer v2 (issue 12).

    The v2 recipe is the `small-32px` preset plus the defaults of `examples/train_tokenizer.py` (L1 + EfficientNet-Lite0
    perceptual loss, EMA of the weights), with the data, batch size and learning-rate schedule that
    `benchmarks/tokenizer_v2.py` trains it with; the preset and batch size are read from that script's own defaults.
    v2 trains for a wall-time budget (40 minutes); the study needs the same number of steps in every arm, so it
    trains for the steps that budget reached here. The recipe is written into `settings.json`, so a study folder never
    mixes tokenizers of two recipes.
    """
    import importlib.util

    spec = importlib.util.spec_from_file_location("tokenizer_v2", REPO / "benchmarks" / "tokenizer_v2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    defaults = module.parse_args(["--output_dir", "unused", "--arm", "uniform"])
    return TokenizerRecipe(
        vq_preset=defaults.preset,
        vq_overrides={},
        steps=TOKENIZER_V2_STEPS,
        batch_size=defaults.batch_size,
        # as benchmarks/tokenizer_v2.py's train() passes them
        extra_args=("--random_flip", "--lr_scheduler", "constant_with_warmup", "--lr_warmup_steps", "100"),
        source="tokenizer v2 (benchmarks/tokenizer_v2.py recipe, fixed step count)",
    )


# ------------------------------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class Domain:
    """A data set of the study and how its samples are scored."""

    dataset: str
    train_split: str
    test_split: str
    feature_spaces: tuple[str, ...]  # the first one chooses the guidance scale and the best arm
    classifier_space: str | None = None  # the feature space whose logits classify samples (accuracy on samples)
    max_train_samples: int | None = None
    max_test_samples: int | None = None


@dataclass(frozen=True)
class Arm:
    name: str
    schedule: str
    k_min: int = 2


@dataclass(frozen=True)
class PriorSpec:
    name: str
    preset: str
    overrides: dict = field(default_factory=dict)


@dataclass(frozen=True)
class StudySettings:
    """Everything that defines a study folder. Arms differ only in the tokenizer's `schedule` (and k_min)."""

    tokenizer: TokenizerRecipe = field(default_factory=tokenizer_recipe)
    domains: dict = field(
        default_factory=lambda: {
            "fmnist": Domain("fashion-mnist", "train_full", "test", ("fmnist-cnn", "effnet-lite0"), "fmnist-cnn"),
            "emoji": Domain("emoji", "train", "test", ("effnet-lite0",)),
        }
    )
    resolution: int = 32
    num_tokens: int = 32
    k_max: int = 1024
    arms: tuple[Arm, ...] = (
        Arm("uniform", "constant"),
        Arm("log", "log"),
        Arm("linear", "linear"),
        Arm("cosine", "cosine"),
    )
    baseline_arm: str = "uniform"
    seeds: tuple[int, ...] = (0, 1)
    train_sizes: tuple[int, ...] = (60000, 5000, 1000)  # the first is the main cells' N
    priors: tuple[PriorSpec, ...] = (PriorSpec("tiny", "tiny"), PriorSpec("small", "small"))
    main_prior: str = "small"
    prior_steps: tuple[int, ...] = (1000, 3000)  # the first is the main cells' length (~1 epoch at N = 60k)
    long_steps_max_n: int = 1000  # prior lengths after the first only for N <= this (64 -> 192 epochs at N = 1k)
    # None: each prior trains for its `prior_steps` with a cosine schedule. An int C: "until train NLL stops falling" —
    # the priors of one (domain, N, size, seed) train side by side at a constant learning rate in chunks of C steps, up
    # to their `prior_steps` (the cap), and all stop after the first chunk in which none of them lowered its mean
    # logged train NLL (bits/image) by `prior_plateau_tolerance` (relative) or more: the arms keep equal steps.
    prior_plateau_chunk: int | None = None
    prior_plateau_tolerance: float = 0.01
    prior_batch_size: int = 64
    prior_learning_rate: float = 1e-3
    checkpointing_steps: int = 300
    nll_max_sequences: int = 5000
    guidance_scales: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0)
    guidance_step: float = 1.0  # the sweep grows by this while its best scale is its largest
    guidance_max: float = 8.0
    sweep_samples: int = 1000
    num_samples: int = 5000
    # EfficientNet-Lite0 at 224 px costs ~0.05-0.13 s per image on one core: its gFID/KID/precision/recall use the
    # first 1000 real and generated images (KID is unbiased there; FID in 1280-d is biased at that size), and its
    # nearest-training-image distances only cells with N <= 1000.
    space_max_samples: dict = field(default_factory=lambda: {"effnet-lite0": 1000})  # per-space cap (real and fake)
    nearest_max_train: dict = field(default_factory=lambda: {"effnet-lite0": 1000})  # nearest only if N <= this
    sample_batch_size: int = 500
    probe_max_train: int = 20000
    probe_features: tuple[str, ...] = ("onehot", "embedding")
    calibration_steps: int = 12
    calibration_images: int = 512
    # "arm" (fmnist) or "domain:arm" -> {"path", "training_summary"} of an already-trained tokenizer used for that arm
    # (first seed) instead of training one (`--tokenizer_dirs`, checked by `adopt_tokenizers`); pinned here so a folder
    # never mixes two.
    adopted_tokenizers: dict = field(default_factory=dict)

    @property
    def feature_spaces(self) -> tuple[str, ...]:
        """Every feature space of the study's domains, each once, in domain order."""
        return tuple(dict.fromkeys(space for domain in self.domains.values() for space in domain.feature_spaces))


def smoke_settings() -> StudySettings:
    """Every stage and code path on tiny settings (CI). One feature space per domain keeps it fast."""
    return StudySettings(
        tokenizer=TokenizerRecipe(
            vq_preset="small-32px",
            vq_overrides=dict(
                encoder_hidden_size=16,
                decoder_hidden_size=16,
                encoder_num_layers=1,
                decoder_num_layers=1,
                encoder_num_heads=2,
                decoder_num_heads=2,
                codebook_size=32,
                decoder_conv_channels=8,
            ),  # fmt: skip
            steps=3,
            batch_size=8,
            extra_args=("--random_flip", "--perceptual_loss", "none", "--learning_rate", "1e-3"),
            source="smoke",
        ),
        domains={
            "fmnist": Domain("fashion-mnist", "train_full", "test", ("fmnist-cnn",), "fmnist-cnn", 64, 32),
            "emoji": Domain("emoji", "train", "test", ("fmnist-cnn",), None, 32, 16),
        },
        num_tokens=6,
        k_max=32,
        arms=(Arm("uniform", "constant"), Arm("log", "log"), Arm("linear", "linear")),
        seeds=(0, 1),
        train_sizes=(64, 24),
        priors=(PriorSpec("tiny", "tiny"), PriorSpec("small", "small", {"hidden_size": 32, "num_hidden_layers": 1})),
        main_prior="small",
        prior_steps=(2, 3),
        long_steps_max_n=24,
        prior_batch_size=8,
        checkpointing_steps=2,
        nll_max_sequences=32,
        guidance_scales=(1.0, 2.0),
        guidance_max=3.0,
        sweep_samples=20,
        num_samples=20,
        space_max_samples={},
        nearest_max_train={},
        sample_batch_size=20,
        probe_max_train=64,
        calibration_steps=4,
        calibration_images=32,
    )


@dataclass(frozen=True)
class Cell:
    """One prior: which tokenizer's codes (domain, arm, seed), how many training images, which size, how long
    (`steps`, or at most `steps` with `plateau`: until its train NLL stops falling)."""

    group: str
    domain: str
    arm: str
    seed: int
    num_train: int
    prior: str
    steps: int
    plateau: bool = False

    @property
    def name(self) -> str:
        length = f"upto{self.steps}" if self.plateau else str(self.steps)
        return f"{self.domain}-{self.arm}-s{self.seed}-n{self.num_train}-{self.prior}-{length}"

    @property
    def lockstep(self) -> tuple:
        """Priors that train side by side until all have stopped improving (the arms of one setting)."""
        return (self.domain, self.seed, self.num_train, self.prior, self.steps)

    @property
    def tokenizer(self) -> tuple[str, str, int]:
        return (self.domain, self.arm, self.seed)


def plan_cells(settings: StudySettings, best_arm: str, num_emoji_train: int | None = None) -> list[Cell]:
    """Every prior of the study, in run order and without duplicates (a cell belongs to its first group)."""
    s = settings
    main_n, main_steps = s.train_sizes[0], s.prior_steps[0]
    pair = list(dict.fromkeys([s.baseline_arm, best_arm]))
    cells: list[Cell] = []
    cell = functools.partial(Cell, plateau=s.prior_plateau_chunk is not None)
    if "fmnist" in s.domains:
        cells += [cell("main", "fmnist", arm.name, s.seeds[0], main_n, s.main_prior, main_steps) for arm in s.arms]
        for arm in pair:
            for n in s.train_sizes:
                for prior in s.priors:
                    for steps in s.prior_steps:
                        if steps == main_steps or n <= s.long_steps_max_n:
                            cells.append(cell("regime", "fmnist", arm, s.seeds[0], n, prior.name, steps))
        cells += [
            cell("seeds", "fmnist", arm, seed, main_n, s.main_prior, main_steps)
            for arm in pair
            for seed in s.seeds[1:]
        ]
    if "emoji" in s.domains:
        n = num_emoji_train if num_emoji_train is not None else s.domains["emoji"].max_train_samples or 0
        cells += [cell("emoji", "emoji", arm, s.seeds[0], n, s.main_prior, main_steps) for arm in pair]
    unique: dict[str, Cell] = {}
    for c in cells:
        unique.setdefault(c.name, c)
    return list(unique.values())


# ------------------------------------------------------------------------------------------- adopted tokenizers
ADOPTION_DEFAULT_DOMAIN = "fmnist"  # `--tokenizer_dirs ARM=...` without a "DOMAIN:" prefix adopts for this domain


def adoption_name(domain: str, arm: str) -> str:
    """The `--tokenizer_dirs` / `adopted_tokenizers` key of a (domain, arm): `arm` for Fashion-MNIST (the keys of
    folders written before other domains could adopt), `domain:arm` otherwise."""
    return arm if domain == ADOPTION_DEFAULT_DOMAIN else f"{domain}:{arm}"


def parse_adoption_name(name: str) -> tuple[str, str]:
    """`"emoji:linear"` -> `("emoji", "linear")`; `"linear"` -> `("fmnist", "linear")`."""
    domain, _, arm = name.rpartition(":")
    return (domain or ADOPTION_DEFAULT_DOMAIN), arm


def check_adopted_tokenizer(settings: StudySettings, name: str, folder: str | Path) -> None:
    """Raise a one-line `ValueError` naming the bad value unless `folder` is a finished tokenizer training (a saved
    `VCQVQModel` with its `training_summary.json`) whose config fits the arm: schedule, K_max, T, K_min (ramped
    schedules), image size and the per-position codebook sizes these give."""
    from vcq_hf.schedules import codebook_sizes

    arms = {arm.name: arm for arm in settings.arms}
    flag = f"--tokenizer_dirs {name}={folder}"
    domain, arm_name = parse_adoption_name(name)
    if domain not in settings.domains:
        raise ValueError(
            f"{flag}: {domain!r} is not a domain of this study; its domains are {sorted(settings.domains)}."
        )
    if arm_name not in arms:
        raise ValueError(f"{flag}: {arm_name!r} is not an arm of this study; its arms are {sorted(arms)}.")
    folder = Path(folder)
    for name in ("config.json", "model.safetensors", "training_summary.json"):
        if not (folder / name).is_file():
            raise ValueError(
                f"{flag}: {folder / name} does not exist (not a saved tokenizer folder, or its training has not "
                "finished)."
            )
    config = json.loads((folder / "config.json").read_text())
    arm = arms[arm_name]
    expected = {
        "schedule": arm.schedule,
        "codebook_size": settings.k_max,
        "num_image_tokens": settings.num_tokens,
        **({"k_min": arm.k_min} if arm.schedule != "constant" else {}),  # the constant schedule ignores K_min
        "image_size": settings.resolution,
        "codebook_sizes": list(codebook_sizes(settings.num_tokens, arm.k_min, settings.k_max, arm.schedule)),
    }
    for key, value in expected.items():
        if config.get(key) != value:
            raise ValueError(
                f"{flag}: its config.json has {key} = {config.get(key)!r}, the arm {arm_name!r} needs {value!r}."
            )


def adopt_tokenizers(settings: StudySettings, tokenizer_dirs: dict[str, str]) -> StudySettings:
    """The settings with already-trained tokenizers adopted for some arms (`--tokenizer_dirs [DOMAIN:]ARM=FOLDER,...`),
    each checked by `check_adopted_tokenizer`; its absolute path and `training_summary.json` are pinned into the
    settings (so into `settings.json`, the stage results and the report: where each tokenizer came from)."""
    adopted = {}
    for name, folder in tokenizer_dirs.items():
        check_adopted_tokenizer(settings, name, folder)
        path = Path(folder).resolve()
        key = adoption_name(*parse_adoption_name(name))
        if key in adopted:
            raise ValueError(f"--tokenizer_dirs names the tokenizer of {key!r} twice ({name}={folder}).")
        adopted[key] = {
            "path": str(path),
            "training_summary": json.loads((path / "training_summary.json").read_text()),
        }
    return replace(settings, adopted_tokenizers=adopted)


# ---------------------------------------------------------------------------------------------------- the study
class Study:
    def __init__(
        self,
        output_dir: Path,
        settings: StudySettings,
        jobs: int = 2,
        in_process: bool = False,
        log=print,
    ):
        self.output_dir = output_dir
        self.settings = settings
        self.jobs = jobs
        self.in_process = in_process
        self.log = log
        self._cache: dict = {}
        output_dir.mkdir(parents=True, exist_ok=True)
        settings_path = output_dir / "settings.json"
        current = json.loads(json.dumps(asdict(settings)))
        if settings_path.exists():
            if json.loads(settings_path.read_text()) != current:
                raise ValueError(
                    f"{output_dir} holds a study run with other settings ({settings_path}); use another --output_dir."
                )
        else:
            settings_path.write_text(json.dumps(current, indent=2))
        self.arms = {arm.name: arm for arm in settings.arms}

    # ------------------------------------------------------------------------------------------ stage runner
    def stage(self, name: str, fn, *args):
        """Run `fn(*args)` unless `<name>.json` exists; store its JSON result and wall time."""
        result_path = self.output_dir / f"{name}.json"
        if result_path.exists():
            self.log(f"[skip] {name}: done ({result_path.name})")
            return json.loads(result_path.read_text())
        self.log(f"[run ] {name}")
        start = time.perf_counter()
        result = fn(*args)
        result["wall_time_s"] = round(time.perf_counter() - start, 1)
        write_json(result_path, result)
        self.log(f"[done] {name} in {result['wall_time_s']} s")
        return result

    def run_scripts(self, commands: list[list[str]]) -> None:
        """Run example scripts, `self.jobs` at a time, one thread each; raise if any fails (its log is kept).

        With `in_process`, each script's `main(parse_args(argv))` runs in this process, one after the other."""
        if self.in_process:
            for command in commands:
                run_example_in_process(command[0], command[1:])
            return
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        pending, running = list(commands), []
        while pending or running:
            while pending and len(running) < self.jobs:
                command = pending.pop(0)
                output_path = Path(command[command.index("--output_dir") + 1])
                log_path = output_path.with_name(output_path.name + ".log")  # not with_suffix: "cfg1.5" has a dot
                log_path.parent.mkdir(parents=True, exist_ok=True)
                handle = open(log_path, "a")
                process = subprocess.Popen([sys.executable, *command], stdout=handle, stderr=handle, env=env)
                running.append((process, handle, log_path, command))
            time.sleep(0.5)
            for entry in list(running):
                process, handle, log_path, command = entry
                if process.poll() is None:
                    continue
                running.remove(entry)
                handle.close()
                if process.returncode != 0:
                    for other in running:
                        other[0].terminate()
                    tail = "".join(log_path.read_text().splitlines(keepends=True)[-25:])
                    raise RuntimeError(
                        f"{' '.join(command)} failed (exit {process.returncode}); log {log_path}:\n{tail}"
                    )

    def _memo(self, key, compute):
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    # ------------------------------------------------------------------------------------------------ paths
    def adopted(self, key: tuple[str, str, int]) -> dict | None:
        """The adopted tokenizer (`--tokenizer_dirs`) of a (domain, arm, seed), if any: first seed only."""
        domain, arm, seed = key
        if seed == self.settings.seeds[0]:
            return self.settings.adopted_tokenizers.get(adoption_name(domain, arm))
        return None

    def tokenizer_dir(self, key: tuple[str, str, int]) -> Path:
        adopted = self.adopted(key)
        if adopted is not None:
            return Path(adopted["path"])
        domain, arm, seed = key
        return self.output_dir / f"tokenizer-{domain}-{arm}-s{seed}"

    def codes_dir(self, key: tuple[str, str, int], split: str) -> Path:
        domain, arm, seed = key
        return self.output_dir / f"codes-{domain}-{arm}-s{seed}-{split}"

    def pipeline_dir(self, cell: Cell) -> Path:
        return self.output_dir / f"ar-{cell.name}"

    def sample_path(self, cell: Cell, guidance_scale: float, num_samples: int) -> Path:
        return self.output_dir / f"samples-{cell.name}-cfg{guidance_scale:g}-n{num_samples}" / "samples.npz"

    def training_flags(self, batch_size: int, steps: int, seed: int, checkpointing_steps: int | None = None) -> list:
        """Flags shared by both training scripts: budget, seed, resumable checkpoints, no validation samples."""
        checkpointing_steps = checkpointing_steps or self.settings.checkpointing_steps
        return [
            "--train_batch_size", str(batch_size), "--max_train_steps", str(steps),
            "--checkpointing_steps", str(checkpointing_steps), "--checkpoints_total_limit", "1",
            "--resume_from_checkpoint", "latest", "--validation_steps", str(10**9), "--seed", str(seed),
        ]  # fmt: skip

    # --------------------------------------------------------------------------------------------- commands
    def tokenizer_command(self, key, output_dir: Path, steps: int | None = None, extra: tuple[str, ...] = ()) -> list:
        s, recipe = self.settings, self.settings.tokenizer
        domain_name, arm_name, seed = key
        domain, arm = s.domains[domain_name], self.arms[arm_name]
        overrides = {
            **recipe.vq_overrides,
            "num_image_tokens": s.num_tokens,
            "codebook_size": s.k_max,
            "schedule": arm.schedule,
            "k_min": arm.k_min,
        }
        return [
            str(EXAMPLES / "train_tokenizer.py"),
            "--dataset_name", domain.dataset, "--split", domain.train_split, "--resolution", str(s.resolution),
            "--model_config", recipe.vq_preset,
            "--config_overrides", *[f"{k}={json.dumps(v)}" for k, v in overrides.items()],
            *recipe.extra_args,
            *self.training_flags(recipe.batch_size, steps or recipe.steps, seed),
            "--usage_eval_samples", "2048", "--output_dir", str(output_dir),
            *(["--max_train_samples", str(domain.max_train_samples)] if domain.max_train_samples else []),
            *extra,
        ]  # fmt: skip

    def prior_command(
        self, cell: Cell, codes_dir: Path, output_dir: Path, extra: tuple[str, ...] = (), steps: int | None = None
    ) -> list:
        """train_ar.py for a cell: `cell.steps` with a cosine schedule; a plateau cell trains to `steps` (the end of
        its current chunk) at a constant learning rate after warm-up, checkpointing at every chunk's end so that the
        next chunk resumes from it."""
        s = self.settings
        prior = {p.name: p for p in s.priors}[cell.prior]
        if cell.plateau:
            chunk = s.prior_plateau_chunk
            flags = self.training_flags(s.prior_batch_size, steps, cell.seed, checkpointing_steps=chunk)
            schedule = ("constant_with_warmup", max(1, chunk // 10))
        else:
            flags = self.training_flags(s.prior_batch_size, cell.steps, cell.seed)
            schedule = ("cosine", max(1, cell.steps // 20))
        return [
            str(EXAMPLES / "train_ar.py"),
            "--codes_dir", str(codes_dir), "--model_config", prior.preset,
            *(["--config_overrides", *[f"{k}={json.dumps(v)}" for k, v in prior.overrides.items()]]
              if prior.overrides else []),
            *flags,
            "--learning_rate", str(s.prior_learning_rate), "--lr_scheduler", schedule[0],
            "--lr_warmup_steps", str(schedule[1]),
            "--max_train_samples", str(cell.num_train), "--output_dir", str(output_dir), *extra,
        ]  # fmt: skip

    # ---------------------------------------------------------------------------------------------- training
    def train_tokenizers(self, keys: list[tuple[str, str, int]]) -> dict:
        """Train the tokenizers of `keys` that are neither adopted nor trained yet; return every one's training summary
        (an adopted one's with `adopted_from`, its folder)."""
        commands = []
        for key in keys:
            folder = self.tokenizer_dir(key)
            if self.adopted(key) is None and not (folder / "model.safetensors").exists():
                commands.append(self.tokenizer_command(key, folder))
        self.run_scripts(commands)
        result = {}
        for key in keys:
            adopted = self.adopted(key)
            if adopted is not None:  # still the tokenizer pinned when the study began
                check_adopted_tokenizer(self.settings, adoption_name(key[0], key[1]), adopted["path"])
                summary = json.loads((Path(adopted["path"]) / "training_summary.json").read_text())
                if summary != adopted["training_summary"]:
                    raise ValueError(
                        f"{adopted['path']}: its training_summary.json changed since this study adopted it "
                        f"({self.output_dir / 'settings.json'}): retrained? Use another --output_dir."
                    )
                summary = {**summary, "adopted_from": adopted["path"]}
            else:
                path = self.tokenizer_dir(key) / "training_summary.json"
                summary = json.loads(path.read_text()) if path.exists() else {}
            result["-".join(map(str, key))] = summary
        return result

    def extract(self, keys: list[tuple[str, str, int]]) -> dict:
        commands = []
        for key in keys:
            domain = self.settings.domains[key[0]]
            for split, limit in (
                (domain.train_split, domain.max_train_samples),
                (domain.test_split, domain.max_test_samples),
            ):
                if (self.codes_dir(key, split) / "vcq_meta.json").exists():
                    continue
                commands.append(
                    [
                        str(EXAMPLES / "extract_codes.py"),
                        "--vq_model_path",
                        str(self.tokenizer_dir(key)),
                        "--dataset_name",
                        domain.dataset,
                        "--split",
                        split,
                        "--batch_size",
                        "500",
                        "--output_dir",
                        str(self.codes_dir(key, split)),
                        "--overwrite",
                        *(["--max_train_samples", str(limit)] if limit else []),
                    ]  # fmt: skip
                )
        self.run_scripts(commands)
        return {"-".join(map(str, key)): len(self.codes(key, "train")[0]) for key in keys}

    def train_priors(self, cells: list[Cell]) -> dict:
        """Train the priors of `cells` (plateau cells chunk by chunk); return each one's training summary (and a
        plateau cell's `plateau` record: steps, why it stopped, mean train NLL per chunk)."""
        plateau = [cell for cell in cells if cell.plateau]
        if plateau:
            self.train_priors_until_plateau(plateau)
        commands = []
        for cell in cells:
            if not cell.plateau and not (self.pipeline_dir(cell) / "model_index.json").exists():
                commands.append(self.prior_command(cell, self.train_codes_dir(cell), self.pipeline_dir(cell)))
        self.run_scripts(commands)
        result = {}
        for cell in cells:
            summary_path = self.pipeline_dir(cell) / "training_summary.json"
            result[cell.name] = json.loads(summary_path.read_text()) if summary_path.exists() else {}
            if cell.plateau:
                result[cell.name]["plateau"] = json.loads((self.pipeline_dir(cell) / PLATEAU_FILE).read_text())
        return result

    def train_codes_dir(self, cell: Cell) -> Path:
        return self.codes_dir(cell.tokenizer, self.split(cell.domain, "train"))

    def prior_steps_done(self, cell: Cell) -> int:
        """Steps of the prior saved in the cell's folder (0 before its first chunk)."""
        summary = self.pipeline_dir(cell) / "training_summary.json"
        if not (self.pipeline_dir(cell) / "model_index.json").exists() or not summary.exists():
            return 0
        return int(json.loads(summary.read_text())["global_step"])

    def train_priors_until_plateau(self, cells: list[Cell]) -> None:
        """Train the priors of each lockstep setting (same domain, seed, N, size, cap; one per arm) chunk by chunk
        until none of them lowered its mean train NLL by the tolerance in the last chunk, or the cap; then write
        `plateau.json` into each one's folder. Resumable: the state is read back from the folders and their logs."""
        s, chunk = self.settings, self.settings.prior_plateau_chunk
        settings_of: dict = {}
        for cell in cells:
            settings_of.setdefault(cell.lockstep, []).append(cell)
        while True:
            commands = []
            for group in settings_of.values():
                if all((self.pipeline_dir(c) / PLATEAU_FILE).exists() for c in group):
                    continue
                done, cap = min(self.prior_steps_done(c) for c in group), group[0].steps
                histories = {c.arm: chunk_means(self.pipeline_dir(c), chunk, done) for c in group}
                flat = done > 0 and plateau_reached(list(histories.values()), s.prior_plateau_tolerance)
                if flat or done >= cap:
                    for c in group:
                        record = {
                            "steps": done, "stopped_by": "plateau" if flat else "cap", "cap": cap, "chunk": chunk,
                            "tolerance": s.prior_plateau_tolerance, "lockstep_arms": sorted(histories),
                            "chunk_mean_train_bits_per_image": histories[c.arm],
                        }  # fmt: skip
                        write_json(self.pipeline_dir(c) / PLATEAU_FILE, record)
                    self.log(f"[prior] {group[0].name}: {done} steps, stopped by the {record['stopped_by']}")
                    continue
                target = min((done // chunk + 1) * chunk, cap)
                for c in group:
                    if self.prior_steps_done(c) < target:
                        commands.append(
                            self.prior_command(c, self.train_codes_dir(c), self.pipeline_dir(c), steps=target)
                        )
            if not commands:
                return
            self.run_scripts(commands)

    # ------------------------------------------------------------------------------------------------- data
    def split(self, domain: str, which: str) -> str:
        d = self.settings.domains[domain]
        return d.train_split if which == "train" else d.test_split

    def codes(self, key, which: str) -> tuple[np.ndarray, np.ndarray, dict]:
        return self._memo(("codes", key, which), lambda: load_codes(self.codes_dir(key, self.split(key[0], which))))

    def images(self, domain: str, which: str) -> np.ndarray:
        """The train or test split (`max_*_samples` applied) as (N, H, W, 3) uint8."""

        def load() -> np.ndarray:
            from vcq_hf import load_builtin_dataset

            d = self.settings.domains[domain]
            limit = d.max_train_samples if which == "train" else d.max_test_samples
            dataset = load_builtin_dataset(d.dataset, self.split(domain, which), resolution=self.settings.resolution)
            if limit:
                dataset = dataset.select(range(min(limit, len(dataset))))
            return np.stack([np.array(image.convert("RGB")) for image in dataset["image"]])

        return self._memo(("images", domain, which), load)

    def reconstructions(self, key) -> np.ndarray:
        """The test split encoded and decoded by a tokenizer, (N, H, W, 3) uint8, cached on disk."""
        path = self.output_dir / "features" / f"reconstructions-{'-'.join(map(str, key))}.npy"

        def compute() -> np.ndarray:
            from vcq_hf import VCQVQModel

            model = VCQVQModel.from_pretrained(self.tokenizer_dir(key)).eval()
            out = []
            with torch.no_grad():
                for batch in np.array_split(
                    self.images(key[0], "test"), max(1, len(self.images(key[0], "test")) // 500)
                ):
                    pixels = torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 127.5 - 1.0
                    decoded = model.decode(model.encode(pixels).codes).sample.clamp(-1, 1)
                    out.append(((decoded + 1) * 127.5).round().permute(0, 2, 3, 1).to(torch.uint8).numpy())
            return np.concatenate(out)

        return self._memo(("recon", key), lambda: cached_array(path, compute))

    def extractor(self, space: str):
        from vcq_hf.metrics import load_feature_extractor

        return self._memo(("extractor", space), lambda: load_feature_extractor(space))

    def features(self, name: str, space: str, images, capped: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Features (and logits) of `images()` in `space`, cached on disk; with `capped`, only the first
        `space_max_samples[space]` images (the same cap for real and generated sets)."""
        path = self.output_dir / "features" / f"{name}-{space}.npz"

        def compute():
            pixels = images()
            cap = self.settings.space_max_samples.get(space) if capped else None
            pixels = pixels[:cap] if cap else pixels
            features, logits = self.extractor(space).extract(pixels, batch_size=250)
            return {"features": features, "logits": logits if logits is not None else np.zeros((0,))}

        data = self._memo(("features", name, space), lambda: cached_arrays(path, compute))
        return data["features"], (data["logits"] if data["logits"].size else None)

    # ------------------------------------------------------------------------------------ tokenizer measures
    def tokenizer_eval(self, key) -> dict:
        from vcq_hf.analysis import analyze_entropy, linear_probe
        from vcq_hf.metrics import compute_generation_metrics

        s, (domain_name, _, seed) = self.settings, key
        domain = s.domains[domain_name]
        tag = "-".join(map(str, key))
        originals, reconstructions = self.images(domain_name, "test"), self.reconstructions(key)
        mse = float(np.mean((originals / 255.0 - reconstructions / 255.0) ** 2))
        result = {"mse": mse, "psnr": 10 * math.log10(1.0 / mse), "num_test_images": len(originals), "rFID": {}}
        for space in domain.feature_spaces:
            real, _ = self.features(f"{domain_name}-test", space, lambda: self.images(domain_name, "test"))
            fake, _ = self.features(f"recon-{tag}", space, lambda: self.reconstructions(key))
            result["rFID"][space] = compute_generation_metrics(real, fake, kid_subset_size=min(1000, len(real)))["FID"]
        save_pairs(originals[:16], reconstructions[:16], self.output_dir / f"reconstruction-{tag}.png")

        train_codes, train_labels, meta = self.codes(key, "train")
        test_codes, test_labels, _ = self.codes(key, "test")
        sizes = meta["codebook_sizes"]
        result["codebook_sizes"] = list(sizes)
        result["capacity_bits"] = float(np.log2(sizes).sum())
        result["entropy"] = {}
        for n in sorted({min(n, len(train_codes)) for n in s.train_sizes} | {len(train_codes)}):
            profile = analyze_entropy(train_codes[:n], codebook_sizes=sizes)
            result["entropy"][str(n)] = {
                "conditional_entropy_bits": profile.conditional_entropy.round(4).tolist(),
                "observed_cliff": profile.observed_cliff,
                "predicted_cliff": profile.predicted_cliff,
                "total_entropy_bits": float(profile.conditional_entropy.sum()),
            }
        keep = np.random.default_rng(seed).permutation(len(train_codes))[: s.probe_max_train]
        codebook = None
        result["probe"] = {}
        for kind in s.probe_features:
            if kind == "embedding" and codebook is None:
                from vcq_hf import VCQVQModel

                codebook = (
                    VCQVQModel.from_pretrained(self.tokenizer_dir(key)).quantizer.get_codebook().detach().numpy()
                )
            probe = linear_probe(
                train_codes[keep], train_labels[keep], test_codes, test_labels, ks=list(range(train_codes.shape[1] + 1)),
                codebook_sizes=sizes, codebook=codebook if kind == "embedding" else None, seed=seed,
            )  # fmt: skip
            result["probe"][kind] = {"ks": probe.ks, "test_accuracy": probe.test_accuracy}
        return result

    # ------------------------------------------------------------------------------------------ cell measures
    def sample(self, requests: list[tuple[Cell, float, int]]) -> None:
        """Draw (cell, guidance scale, number of images) sample sets with sample.py, skipping finished ones."""
        commands = []
        for cell, scale, num in dict.fromkeys(requests):
            path = self.sample_path(cell, scale, num)
            if not path.exists():
                commands.append(
                    [
                        str(EXAMPLES / "sample.py"),
                        "--pipeline_path",
                        str(self.pipeline_dir(cell)),
                        "--num_samples",
                        str(num),
                        "--guidance_scale",
                        str(scale),
                        "--batch_size",
                        str(self.settings.sample_batch_size),
                        "--seed",
                        str(cell.seed),
                        "--no_png",
                        "--output_dir",
                        str(path.parent),
                    ]  # fmt: skip
                )
        self.run_scripts(commands)

    def sample_features(self, cell: Cell, scale: float, num: int, space: str):
        path = self.sample_path(cell, scale, num)
        return self.features(path.parent.name, space, lambda: np.load(path)["arr_0"])

    def guidance_sweep(self, cell: Cell, real: np.ndarray, space: str) -> tuple[dict, float]:
        """gFID on `sweep_samples` per scale; the sweep grows while its best scale is its largest one."""
        from vcq_hf.metrics import frechet_distance_from_features

        s = self.settings
        scales, fids = list(s.guidance_scales), {}
        while True:
            todo = [scale for scale in scales if f"{scale:g}" not in fids]
            self.sample([(cell, scale, s.sweep_samples) for scale in todo])
            for scale in todo:
                fake, _ = self.sample_features(cell, scale, s.sweep_samples, space)
                fids[f"{scale:g}"] = frechet_distance_from_features(real, fake)
            best = min(scales, key=lambda scale: fids[f"{scale:g}"])
            if best != scales[-1] or scales[-1] + s.guidance_step > s.guidance_max + 1e-9:
                return fids, best
            scales.append(scales[-1] + s.guidance_step)

    def cell_eval(self, cell: Cell) -> dict:
        from vcq_hf.analysis import copy_statistics, generalization_gap, nearest_training_distances
        from vcq_hf.analysis.cli import load_prior
        from vcq_hf.metrics import compute_generation_metrics

        s, domain = self.settings, self.settings.domains[cell.domain]
        key, spaces = cell.tokenizer, domain.feature_spaces
        train_codes, train_labels, _ = self.codes(key, "train")
        test_codes, test_labels, _ = self.codes(key, "test")
        n = min(cell.num_train, len(train_codes))
        train_codes, train_labels = train_codes[:n], train_labels[:n]  # what train_ar.py trained on
        result: dict = {"cell": asdict(cell), "num_train": n}
        summary = json.loads((self.pipeline_dir(cell) / "training_summary.json").read_text())
        result["prior_steps"] = summary["global_step"]
        result["prior_final_train_bits_per_image"] = summary["final_logs"].get("bits_per_image")
        if cell.plateau:
            result["plateau"] = json.loads((self.pipeline_dir(cell) / PLATEAU_FILE).read_text())

        # 1. likelihood: the generalisation gap
        rng = np.random.default_rng(cell.seed)
        pick_train = np.sort(rng.permutation(n)[: s.nll_max_sequences])
        pick_test = np.sort(rng.permutation(len(test_codes))[: s.nll_max_sequences])
        gap = generalization_gap(
            load_prior(self.pipeline_dir(cell)), train_codes[pick_train], test_codes[pick_test],
            train_labels[pick_train], test_labels[pick_test], num_train_images=n,
        )  # fmt: skip
        result["nll"] = gap.to_dict()

        # 2. generation: guidance sweep, then the final sample sets in every feature space
        test_images = lambda: self.images(cell.domain, "test")  # noqa: E731
        real = {space: self.features(f"{cell.domain}-test", space, test_images)[0] for space in spaces}
        sweep, best = self.guidance_sweep(cell, real[spaces[0]], spaces[0])
        result["guidance_sweep"] = {"space": spaces[0], "num_samples": s.sweep_samples, "fid": sweep}
        result["best_guidance_scale"] = best
        self.sample([(cell, 1.0, s.num_samples), (cell, best, s.num_samples)])
        recon_tag = f"recon-{'-'.join(map(str, key))}"
        for label, scale in (("no_guidance", 1.0), ("best_guidance", best)):
            path = self.sample_path(cell, scale, s.num_samples)
            metrics: dict = {"guidance_scale": scale}
            for space in spaces:
                fake, logits = self.sample_features(cell, scale, s.num_samples, space)
                metrics.update(
                    compute_generation_metrics(
                        real[space],
                        fake,
                        fake_logits=logits,
                        extractor_name=space,
                        kid_subset_size=min(1000, len(fake), len(real[space])),
                        seed=cell.seed,
                    )  # fmt: skip
                )
                if space == domain.classifier_space and logits is not None:
                    labels = np.load(path)["labels"][: len(logits)]
                    metrics[f"accuracy-{space}"] = float(np.mean(logits.argmax(axis=1) == labels))
            reference, _ = self.features(recon_tag, spaces[0], lambda: self.reconstructions(key))
            fake, _ = self.sample_features(cell, scale, s.num_samples, spaces[0])
            metrics[f"FID-vs-reconstructions-{spaces[0]}"] = compute_generation_metrics(
                reference, fake, kid_subset_size=min(1000, len(fake), len(reference))
            )["FID"]

            # 3. memorisation of the generated codes and images
            metrics["copies"] = copy_statistics(np.load(path)["codes"], train_codes).to_dict()
            metrics["nearest"] = {}
            for space in spaces:
                limit = s.nearest_max_train.get(space)
                if limit is not None and n > limit:
                    continue
                train_features, _ = self.features(
                    f"{cell.domain}-train-n{n}", space, lambda: self.images(cell.domain, "train")[:n], capped=False
                )
                fake, _ = self.sample_features(cell, scale, s.num_samples, space)
                metrics["nearest"][space] = nearest_training_distances(
                    fake, train_features, real[space], feature_name=space
                ).to_dict()
            result[label] = metrics
        result["heldout_copies"] = copy_statistics(test_codes, train_codes).to_dict()
        save_sample_rows(self.sample_path(cell, best, s.num_samples), self.output_dir / f"samples-{cell.name}.png")
        return result

    # ------------------------------------------------------------------------------------------- calibration
    def calibrate(self) -> dict:
        """Per-unit costs on this machine: training steps timed from the scripts' own logs, the rest in-process."""
        s = self.settings
        folder = self.output_dir / "calibration"
        key = ("fmnist" if "fmnist" in s.domains else next(iter(s.domains)), s.arms[0].name, 0)
        domain = s.domains[key[0]]
        extra = (
            "--logging_steps",
            "1",
            "--max_train_samples",
            str(s.calibration_images),
            "--checkpointing_steps",
            "1000000",
        )
        costs: dict = {}
        tokenizer_dir = folder / "tokenizer"
        # Repeated flags: argparse keeps the last value, so `extra` overrides the recipe's budget and logging.
        if not (tokenizer_dir / "model.safetensors").exists():
            self.run_scripts([self.tokenizer_command(key, tokenizer_dir, steps=s.calibration_steps, extra=extra)])
        costs["tokenizer_step_s"] = step_seconds(tokenizer_dir)
        if "--use_discriminator" in s.tokenizer.extra_args:  # the adversarial phase costs more per step
            adv_dir = folder / "tokenizer-adversarial"
            if not (adv_dir / "model.safetensors").exists():
                adversarial = (*extra, "--disc_start_step", "0")
                self.run_scripts([self.tokenizer_command(key, adv_dir, steps=s.calibration_steps, extra=adversarial)])
            costs["tokenizer_adversarial_step_s"] = step_seconds(adv_dir)
        codes_dir = folder / "codes"
        if not (codes_dir / "vcq_meta.json").exists():
            self.run_scripts(
                [
                    [
                        str(EXAMPLES / "extract_codes.py"), "--vq_model_path", str(tokenizer_dir),
                        "--dataset_name", domain.dataset, "--split", domain.train_split,
                        "--batch_size", "500", "--output_dir", str(codes_dir),
                        "--overwrite", "--max_train_samples", str(s.calibration_images),
                    ]
                ]
            )  # fmt: skip
        costs["prior_step_s"] = {}
        for prior in s.priors:
            cell = Cell("calibration", key[0], key[1], 0, s.calibration_images, prior.name, s.calibration_steps)
            prior_dir = folder / f"prior-{prior.name}"
            if not (prior_dir / "model_index.json").exists():
                start = time.perf_counter()
                self.run_scripts([self.prior_command(cell, codes_dir, prior_dir, extra=extra)])
                run_s = time.perf_counter() - start
                # what a run costs beyond its steps (start-up, final save and grid): paid once per plateau chunk
                costs.setdefault("prior_start_s", {})[prior.name] = max(
                    0.0, run_s - s.calibration_steps * step_seconds(prior_dir)
                )
            costs["prior_step_s"][prior.name] = step_seconds(prior_dir)
        costs.update(self.calibrate_in_process(folder, tokenizer_dir, codes_dir))
        costs["load_average_1min"] = os.getloadavg()[0]  # costs scale with the machine's load when calibrated
        return costs

    def calibrate_in_process(self, folder: Path, tokenizer_dir: Path, codes_dir: Path) -> dict:
        from vcq_hf import VCQPipeline, VCQVQModel
        from vcq_hf.analysis import prior_nll

        s = self.settings
        costs: dict = {"sample_s": {}, "nll_s": {}, "features_s": {}}
        images = torch.rand(64, 3, s.resolution, s.resolution) * 2 - 1
        model = VCQVQModel.from_pretrained(tokenizer_dir).eval()
        with torch.no_grad():
            model.encode(images[:8])
            start = time.perf_counter()
            model.encode(images)
            costs["encode_s"] = (time.perf_counter() - start) / len(images)
        codes, labels, meta = load_codes(codes_dir)
        for prior in s.priors:
            pipeline = VCQPipeline.from_pretrained(folder / f"prior-{prior.name}")
            num = 32
            costs["sample_s"][prior.name] = {}
            for scale in (1.0, 2.0):  # per-image generators and decoding, as in sample.py
                generators = [torch.Generator().manual_seed(i) for i in range(num)]
                pipeline(class_labels=[0] * 4, guidance_scale=scale, generator=generators[:4], output_type="np")
                start = time.perf_counter()
                pipeline(class_labels=[0] * num, guidance_scale=scale, generator=generators, output_type="np")
                costs["sample_s"][prior.name][f"{scale:g}"] = (time.perf_counter() - start) / num
            start = time.perf_counter()
            prior_nll(pipeline.transformer, codes[:128], labels[:128])
            costs["nll_s"][prior.name] = (time.perf_counter() - start) / min(128, len(codes))
        from vcq_hf.analysis import linear_probe

        ks, times = list(range(codes.shape[1] + 1)), []
        for rows in (len(codes) // 2, len(codes)):  # cost = fixed + per-row: fit both from two sizes
            start = time.perf_counter()
            linear_probe(codes[:rows], labels[:rows], codes, labels, ks=ks, codebook_sizes=meta["codebook_sizes"])
            times.append(time.perf_counter() - start)
        per_row = max(0.0, (times[1] - times[0]) / (len(codes) - len(codes) // 2))
        costs["probe_s"] = {"fixed": max(0.0, times[1] - per_row * len(codes)), "per_train_row": per_row}
        spaces = s.feature_spaces
        pixels = (np.random.default_rng(0).random((32, s.resolution, s.resolution, 3)) * 255).astype(np.uint8)
        for space in spaces:
            self.extractor(space).extract(pixels[:4])
            start = time.perf_counter()
            self.extractor(space).extract(pixels)
            costs["features_s"][space] = (time.perf_counter() - start) / len(pixels)
        return costs

    # ---------------------------------------------------------------------------------------------- planning
    def plan(self, costs: dict, cells: list[Cell], tokenizer_keys: list, num_images: dict) -> list[dict]:
        """Planned CPU and wall seconds per stage group, from the calibrated unit costs."""
        s = self.settings
        recipe = s.tokenizer
        tok_step = costs["tokenizer_step_s"]
        if "tokenizer_adversarial_step_s" in costs:
            start = int(flag_value(recipe.extra_args, "--disc_start_step", recipe.steps))
            start = min(start, recipe.steps)
            tokenizer_s = tok_step * start + costs["tokenizer_adversarial_step_s"] * (recipe.steps - start)
        else:
            tokenizer_s = tok_step * recipe.steps
        rows, featurised = [], set()

        def add(group: str, what: str, jobs_cpu: list[float], serial_cpu: float = 0.0):
            rows.append(
                {
                    "stage": group,
                    "work": what,
                    "cpu_s": sum(jobs_cpu) + serial_cpu,
                    "wall_s": schedule_wall(jobs_cpu, self.jobs) + serial_cpu,
                }
            )

        for group in GROUPS:
            group_cells = [c for c in cells if c.group == group]
            if not group_cells:
                continue
            new_keys = [k for k in dict.fromkeys(c.tokenizer for c in group_cells) if k in tokenizer_keys]
            for k in new_keys:
                tokenizer_keys.remove(k)
            train_jobs = [tokenizer_s for k in new_keys if self.adopted(k) is None]
            encode = sum(num_images[k[0]]["train"] + num_images[k[0]]["test"] for k in new_keys) * costs["encode_s"]
            per_key_eval = 0.0
            for k in new_keys:
                n_test = num_images[k[0]]["test"]
                per_key_eval += n_test * costs["encode_s"] * 2  # reconstructions
                for space in s.domains[k[0]].feature_spaces:
                    cap = s.space_max_samples.get(space) or n_test
                    per_key_eval += min(cap, n_test) * costs["features_s"][space]
                probe_rows = min(s.probe_max_train, num_images[k[0]]["train"])
                probe = costs["probe_s"]["fixed"] + costs["probe_s"]["per_train_row"] * probe_rows
                per_key_eval += probe * len(s.probe_features)
            if new_keys:
                add(group, f"{len(train_jobs)} tokenizers x {recipe.steps} steps", train_jobs)
                add(group, f"codes of {len(new_keys)} tokenizers (train + test)", [], encode)
                add(group, "reconstruction, entropy and probes", [], per_key_eval)
            prior_jobs, start_s = [], costs.get("prior_start_s", {})
            for c in group_cells:
                runs = math.ceil(c.steps / s.prior_plateau_chunk) if c.plateau else 1
                prior_jobs.append(c.steps * costs["prior_step_s"][c.prior] + runs * start_s.get(c.prior, 0.0))
            what = f"{len(group_cells)} priors ({', '.join(sorted({c.prior for c in group_cells}))}"
            if any(c.plateau for c in group_cells):
                what += f"; until train NLL stops falling, chunks of {s.prior_plateau_chunk}: at most"
            add(group, f"{what} {'/'.join(sorted({str(c.steps) for c in group_cells}))} steps)", prior_jobs)
            sampling, serial = [], 0.0
            n_sweep = len(s.guidance_scales) + 1  # one extension of the sweep on average
            for c in group_cells:
                sample_s = costs["sample_s"][c.prior]
                sampling += [s.sweep_samples * sample_s["1"]] + [s.sweep_samples * sample_s["2"]] * (n_sweep - 1)
                sampling += [s.num_samples * sample_s["1"], s.num_samples * sample_s["2"]]
                serial += 2 * min(c.num_train, s.nll_max_sequences) * costs["nll_s"][c.prior]
                spaces = s.domains[c.domain].feature_spaces
                serial += n_sweep * s.sweep_samples * costs["features_s"][spaces[0]]
                for space in spaces:
                    serial += (
                        2
                        * min(s.space_max_samples.get(space) or s.num_samples, s.num_samples)
                        * costs["features_s"][space]
                    )
                    limit = s.nearest_max_train.get(space)
                    if (limit is None or c.num_train <= limit) and (c.domain, c.num_train, space) not in featurised:
                        featurised.add((c.domain, c.num_train, space))  # training images, once per (N, space)
                        serial += c.num_train * costs["features_s"][space]
            add(group, f"{len(group_cells)} cells: samples, NLL, features, metrics", sampling, serial)
        return rows

    def print_plan(self, rows: list[dict], load: float) -> None:
        self.log(
            f"Planned cost per stage (unit costs calibrated at load average {load:.1f} on {os.cpu_count()} CPUs; "
            f"wall with {self.jobs} parallel jobs):"
        )
        self.log("| stage | work | CPU (min) | wall (min) |\n| --- | --- | ---: | ---: |")
        for row in rows:
            self.log(f"| {row['stage']} | {row['work']} | {row['cpu_s'] / 60:.1f} | {row['wall_s'] / 60:.1f} |")
        cpu, wall = sum(r["cpu_s"] for r in rows), sum(r["wall_s"] for r in rows)
        self.log(f"| **total** | | **{cpu / 3600:.2f} h** | **{wall / 3600:.2f} h** |")


# ------------------------------------------------------------------------------------------------- run the study
def count_images(settings: StudySettings) -> dict:
    """Train/test image counts per domain (from the built data sets, `max_*_samples` applied)."""
    from vcq_hf import load_builtin_dataset

    counts = {}
    for name, domain in settings.domains.items():
        counts[name] = {}
        for which, split, limit in (
            ("train", domain.train_split, domain.max_train_samples),
            ("test", domain.test_split, domain.max_test_samples),
        ):
            size = len(load_builtin_dataset(domain.dataset, split, resolution=settings.resolution))
            counts[name][which] = min(size, limit) if limit else size
    return counts


def run_study(
    output_dir: Path,
    settings: StudySettings,
    jobs: int = 2,
    report_dir: Path | None = None,
    in_process: bool = False,
    groups: tuple[str, ...] = GROUPS,
    best_vcq_arm: str | None = None,
    plan_only: bool = False,
    costs_from: Path | None = None,
) -> dict:
    study = Study(output_dir, settings, jobs, in_process=in_process)
    results: dict = {"settings": asdict(settings), "groups": list(groups)}
    for arm, adopted in settings.adopted_tokenizers.items():
        summary = adopted["training_summary"]
        study.log(
            f"Tokenizer of arm {arm} adopted from {adopted['path']}: {summary.get('global_step')} steps x batch "
            f"{summary.get('total_batch_size')} (the recipe's: {settings.tokenizer.steps} x {settings.tokenizer.batch_size})"
        )
    num_images = study.stage("images", count_images, settings)
    if costs_from is not None and not (output_dir / "calibrate.json").exists():
        costs_file = Path(costs_from) / "calibrate.json" if Path(costs_from).is_dir() else Path(costs_from)
        if not costs_file.is_file():
            raise FileNotFoundError(
                f"--costs_from {costs_from}: no calibrate.json there (a study folder or the file)."
            )
        copied = {k: v for k, v in json.loads(costs_file.read_text()).items() if k != "wall_time_s"}
        write_json(output_dir / "calibrate.json", {**copied, "copied_from": str(costs_file)})  # not run here
    results["calibration"] = costs = study.stage("calibrate", study.calibrate)
    vcq_arms = [arm.name for arm in settings.arms if arm.name != settings.baseline_arm]
    guess = best_vcq_arm or (json.loads((output_dir / "best-arm.json").read_text())["best_vcq_arm"]
                              if (output_dir / "best-arm.json").exists() else vcq_arms[0])  # fmt: skip
    emoji_n = num_images.get("emoji", {}).get("train")
    planned = [c for c in plan_cells(settings, guess, emoji_n) if c.group in groups]
    all_keys = list(dict.fromkeys(c.tokenizer for c in planned))
    # unit costs copied with --costs_from may not cover this study: (what, costs key, flag) -> what the plan needs
    needed = {
        ("priors", "prior_step_s", "--priors"): {c.prior for c in planned},
        ("feature spaces", "features_s", "--feature_spaces"): set(settings.feature_spaces),
    }
    for (what, key, flag), names in needed.items():
        missing = sorted(names - set(costs.get(key, {})))
        if missing:
            raise ValueError(
                f"The unit costs of {output_dir / 'calibrate.json'} cover the {what} {sorted(costs.get(key, {}))}, "
                f"not {missing}: calibrate with {flag} including them (without --costs_from) in a new --output_dir."
            )
    rows = study.plan(costs, planned, list(all_keys), num_images)
    study.print_plan(rows, costs.get("load_average_1min", float("nan")))
    if best_vcq_arm is None and not (output_dir / "best-arm.json").exists() and len(vcq_arms) > 1:
        study.log(f"(The plan assumes '{guess}' as the best VCQ arm until the main cells choose it.)")
    write_json(output_dir / "plan.json", {"rows": rows, "best_vcq_arm_assumed": guess})
    results["plan"] = rows
    if plan_only:
        return results

    def run_group(group: str, cells: list[Cell]) -> None:
        keys = list(dict.fromkeys(c.tokenizer for c in cells))
        results.setdefault("tokenizers", {}).update(study.stage(f"tokenizers-{group}", study.train_tokenizers, keys))
        study.stage(f"codes-{group}", study.extract, keys)
        for key in keys:
            tag = "-".join(map(str, key))
            results.setdefault("tokenizer_eval", {})[tag] = study.stage(
                f"tokenizer-eval-{tag}", study.tokenizer_eval, key
            )
        results.setdefault("priors", {}).update(study.stage(f"priors-{group}", study.train_priors, cells))
        for cell in cells:
            results.setdefault("cells", {})[cell.name] = study.stage(f"cell-{cell.name}", study.cell_eval, cell)

    main_cells = [c for c in plan_cells(settings, guess, emoji_n) if c.group == "main"]
    if "main" in groups:
        run_group("main", main_cells)
    if best_vcq_arm is not None:
        if best_vcq_arm not in vcq_arms:
            raise ValueError(f"--best_vcq_arm {best_vcq_arm!r} is not one of the VCQ arms {vcq_arms}.")
        best = best_vcq_arm
    else:
        best = study.stage("best-arm", choose_best_arm, study, main_cells, vcq_arms)["best_vcq_arm"]
    results["best_vcq_arm"] = best
    for group in GROUPS[1:]:
        cells = [c for c in plan_cells(settings, best, emoji_n) if c.group == group]
        if group in groups and cells:
            run_group(group, cells)
    if report_dir is not None:
        write_report(results, study, report_dir)
    return results


def choose_best_arm(study: Study, main_cells: list[Cell], vcq_arms: list[str]) -> dict:
    """The VCQ arm with the lowest gFID without guidance (first feature space) in the main cells."""
    space = study.settings.domains["fmnist"].feature_spaces[0]
    scores = {}
    for cell in main_cells:
        path = study.output_dir / f"cell-{cell.name}.json"
        if cell.arm in vcq_arms and path.exists():
            scores[cell.arm] = json.loads(path.read_text())["no_guidance"][f"FID-{space}"]
    if not scores:
        raise RuntimeError(
            "No main cell of a VCQ arm has been evaluated: run the 'main' group or pass --best_vcq_arm."
        )
    return {"best_vcq_arm": min(scores, key=scores.get), f"gFID-{space}-no-guidance": scores}


# ---------------------------------------------------------------------------------------------------- helpers
def write_json(path: Path, value) -> None:
    """Atomic JSON write (a crash never leaves a half-written stage result that would be skipped)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, default=float))
    os.replace(tmp, path)


def cached_array(path: Path, compute) -> np.ndarray:
    if path.exists():
        return np.load(path)
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npy")
    np.save(tmp, value)
    os.replace(tmp, path)
    return value


def cached_arrays(path: Path, compute) -> dict:
    if path.exists():
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **value)
    os.replace(tmp, path)
    return value


def flag_value(args, flag: str, default):
    args = list(args)
    return args[args.index(flag) + 1] if flag in args else default


def step_seconds(run_dir: Path) -> float:
    """Median wall seconds per optimizer step from a run's `logs/metrics.jsonl` (logged every step)."""
    records = [json.loads(line) for line in (run_dir / "logs" / "metrics.jsonl").read_text().splitlines() if line]
    stamps = sorted({r["step"]: r["time"] for r in records if r.get("step") is not None and "time" in r}.items())
    deltas = [(t1 - t0) / (s1 - s0) for (s0, t0), (s1, t1) in zip(stamps[1:], stamps[2:]) if s1 > s0]
    if not deltas:
        raise RuntimeError(f"{run_dir}: too few logged steps to time a step.")
    return float(np.median(deltas))


PLATEAU_FILE = "plateau.json"


def chunk_means(run_dir: Path, chunk: int, steps: int) -> list[float]:
    """Mean logged train NLL (train_ar.py's `bits_per_image`) per chunk of `chunk` steps, over the first `steps`
    steps of a run's `logs/metrics.jsonl` (a step logged twice, by a resumed run, counts once: its last value)."""
    path = run_dir / "logs" / "metrics.jsonl"
    if steps < 1 or not path.exists():
        return []
    by_step = {}
    for line in path.read_text().splitlines():
        record = json.loads(line) if line.strip() else {}
        if record.get("step") is not None and "bits_per_image" in record:
            by_step[int(record["step"])] = float(record["bits_per_image"])
    means = []
    for start in range(0, steps, chunk):
        values = [v for step, v in by_step.items() if start < step <= min(start + chunk, steps)]
        if not values:
            raise RuntimeError(f"{path}: no train NLL logged in steps {start + 1}..{min(start + chunk, steps)}.")
        means.append(float(np.mean(values)))
    return means


def plateau_reached(histories: list[list[float]], tolerance: float) -> bool:
    """True when every history (mean train NLL per chunk) has at least two chunks and fell by less than `tolerance`
    (relative to the chunk before) in its last one.

    >>> plateau_reached([[300.0, 250.0, 249.0], [200.0, 199.5]], tolerance=0.01)
    True
    >>> plateau_reached([[300.0, 250.0, 249.0], [200.0, 150.0]], tolerance=0.01)
    False
    """
    return all(len(h) >= 2 and h[-2] - h[-1] < tolerance * h[-2] for h in histories)


def schedule_wall(durations: list[float], jobs: int) -> float:
    """Wall time of independent jobs on `jobs` slots, longest first (how `Study.run_scripts` runs them)."""
    slots = [0.0] * max(1, jobs)
    for duration in sorted(durations, reverse=True):
        slots[slots.index(min(slots))] += duration
    return max(slots) if durations else 0.0


def run_example_in_process(script: str, argv: list[str]) -> None:
    """`main(parse_args(argv))` of an example script, imported from its path."""
    import importlib.util

    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(f"vcq_example_{Path(script).stem}", script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    try:
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(True)
    except ImportError:  # pragma: no cover - accelerate is a dependency of the examples
        pass
    module.main(module.parse_args(argv))


def load_codes(codes_dir: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """Codes (N, T) int64, labels (N,) and the metadata written by extract_codes.py."""
    from datasets import load_from_disk

    dataset = load_from_disk(str(codes_dir)).with_format("numpy")
    meta = json.loads((codes_dir / "vcq_meta.json").read_text())
    return np.asarray(dataset["codes"], dtype=np.int64), np.asarray(dataset["label"], dtype=np.int64), meta


def save_pairs(top: np.ndarray, bottom: np.ndarray, path: Path) -> None:
    from PIL import Image

    grid = np.concatenate([np.concatenate(list(top), axis=1), np.concatenate(list(bottom), axis=1)], axis=0)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(path)


def save_sample_rows(npz_path: Path, path: Path, per_class: int = 8) -> None:
    """One row per class (at most 10), `per_class` samples each."""
    from PIL import Image

    data = np.load(npz_path)
    images, labels = data["arr_0"], data["labels"]
    rows = []
    for label in np.unique(labels)[:10]:
        picks = images[labels == label][:per_class]
        if len(picks) < per_class:
            picks = np.concatenate([picks, np.full((per_class - len(picks), *images.shape[1:]), 255, np.uint8)])
        rows.append(np.concatenate(list(picks), axis=1))
    grid = np.concatenate(rows, axis=0)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(path)


# ----------------------------------------------------------------------------------------------------- report
def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}f}"


def mean_spread(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.2f} (1 seed)"
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f} ({len(values)} seeds)"


def write_report(results: dict, study: Study, report_dir: Path) -> None:
    """results.json, results.md (every table) and the plots, written to `report_dir`."""
    import shutil

    s = study.settings
    report_dir.mkdir(parents=True, exist_ok=True)
    write_json(report_dir / "results.json", results)
    lines = [
        "# Study v2 results (generated by benchmarks/reproduce_small.py)",
        "",
        f"Tokenizer recipe: {s.tokenizer.source} ({s.tokenizer.vq_preset}, {s.tokenizer.steps} steps). "
        f"Groups run: {', '.join(results['groups'])}. Best VCQ arm: {results.get('best_vcq_arm')}.",
        "",
    ]
    for name, adopted in s.adopted_tokenizers.items():
        summary = adopted["training_summary"]
        domain, arm = parse_adoption_name(name)
        lines.append(
            f"- Tokenizer of arm `{arm}` ({domain}, seed {s.seeds[0]}) adopted, not trained here: `{adopted['path']}` "
            f"({summary.get('global_step')} steps x batch {summary.get('total_batch_size')}, "
            f"{summary.get('wall_time_s')} s, by {summary.get('script')}; its training_summary.json is in "
            "results.json → settings.adopted_tokenizers)."
        )
    if s.adopted_tokenizers:
        lines.append("")
    evals = results.get("tokenizer_eval", {})
    if evals:
        spaces = sorted({space for e in evals.values() for space in e["rFID"]})
        lines += [
            "## Tokenizers (test split)",
            "",
            "| tokenizer | PSNR (dB) | " + " | ".join(f"rFID {sp}" for sp in spaces) + " | capacity (bits) |",
            "| --- | ---: |" + " ---: |" * len(spaces) + " ---: |",
        ]
        for tag, e in evals.items():
            rfid = " | ".join(_fmt(e["rFID"].get(sp)) for sp in spaces)
            lines.append(f"| {tag} | {_fmt(e['psnr'])} | {rfid} | {_fmt(e['capacity_bits'], 0)} |")
        lines += ["", "## Claim 1: the entropy cliff (predicted / observed, H_t < 0.05 bit)", ""]
        sizes = sorted({n for e in evals.values() for n in e["entropy"]}, key=int)
        lines += ["| tokenizer | " + " | ".join(f"N = {n}" for n in sizes) + " |", "| --- |" + " --- |" * len(sizes)]
        for tag, e in evals.items():
            cells = [
                f"{e['entropy'][n]['predicted_cliff']} / {e['entropy'][n]['observed_cliff']}"
                if n in e["entropy"]
                else "–"
                for n in sizes
            ]
            lines.append(f"| {tag} | " + " | ".join(cells) + " |")
        lines += ["", "## Claim 3: first-k probe (test top-1 %)", ""]
        for kind in s.probe_features:
            ks = sorted({k for k in (1, 2, 4, 8, 10, 16, 24, s.num_tokens) if k <= s.num_tokens})
            lines += [f"{kind} features:", "", "| tokenizer | " + " | ".join(f"k={k}" for k in ks) + " |"]
            lines.append("| --- |" + " ---: |" * len(ks))
            for tag, e in evals.items():
                probe = e["probe"].get(kind)
                if probe:
                    acc = dict(zip(probe["ks"], probe["test_accuracy"]))
                    lines.append(
                        f"| {tag} | " + " | ".join(_fmt(acc.get(k, None) and acc[k] * 100, 1) for k in ks) + " |"
                    )
            lines.append("")
    cells = results.get("cells", {})
    if cells:
        lines += [
            "## Cells: prior NLL gap, copies, generation",
            "",
            "Train / held-out NLL in bits/image (log2 N = what memorising N images costs); copy rate of the samples "
            "without guidance (held-out real codes: the rate a generalising prior should match); nearest-training "
            "distance ratio samples / held-out (< 1: samples sit closer to training images than new real ones).",
            "",
            "| cell | prior steps | train NLL | held-out NLL | gap | log2 N | copy rate (held-out) | NN ratio | "
            "gFID none | gFID best (scale) | KID x1e3 | prec / rec | IS | acc |",
            "| --- |" + " ---: |" * 13,
        ]
        for name, r in cells.items():
            space = r["guidance_sweep"]["space"]
            ng, bg = r["no_guidance"], r["best_guidance"]
            nn = ng["nearest"].get(space, {}).get("median_ratio")
            steps = str(r.get("prior_steps", "–"))
            if "plateau" in r:
                steps += f" ({r['plateau']['stopped_by']})"
            lines.append(
                f"| {name} | {steps} | {_fmt(r['nll']['train']['mean_bits_per_image'])} | "
                f"{_fmt(r['nll']['test']['mean_bits_per_image'])} | {_fmt(r['nll']['gap_bits_per_image'])} | "
                f"{_fmt(r['nll']['memorization_bits'])} | {_fmt(ng['copies']['copy_rate'], 3)} "
                f"({_fmt(r['heldout_copies']['copy_rate'], 3)}) | {_fmt(nn, 3)} | {_fmt(ng[f'FID-{space}'])} | "
                f"{_fmt(bg[f'FID-{space}'])} ({r['best_guidance_scale']:g}) | {_fmt(ng[f'KID-{space}'] * 1e3)} | "
                f"{_fmt(ng[f'precision-{space}'], 3)} / {_fmt(ng[f'recall-{space}'], 3)} | "
                f"{_fmt(ng.get(f'IS-{space}'))} | {_fmt(ng.get(f'accuracy-{space}'), 3)} |"
            )
        lines += [
            "",
            "Memorisation detail, no guidance: mean longest prefix (tokens) that a sample shares with a training "
            "sequence (held-out real codes in brackets); FID of the samples against the tokenizer's own test "
            "reconstructions (how closely the prior reproduces its codes); a plateau prior's mean logged train NLL "
            "per chunk (bits/image).",
            "",
            "| cell | shared prefix (held-out) | FID vs reconstructions | train NLL per chunk |",
            "| --- | ---: | ---: | --- |",
        ]
        for name, r in cells.items():
            space, ng = r["guidance_sweep"]["space"], r["no_guidance"]
            chunks = r.get("plateau", {}).get("chunk_mean_train_bits_per_image", [])
            lines.append(
                f"| {name} | {_fmt(ng['copies']['mean_shared_prefix'])} "
                f"({_fmt(r['heldout_copies']['mean_shared_prefix'])}) | "
                f"{_fmt(ng.get(f'FID-vs-reconstructions-{space}'))} | "
                f"{', '.join(f'{v:.1f}' for v in chunks) or '–'} |"
            )
        first_spaces = {d.feature_spaces[0] for d in s.domains.values()}
        other = sorted({sp for d in s.domains.values() for sp in d.feature_spaces} - first_spaces)
        for space in other:
            lines += [
                "",
                f"Second feature space ({space}): gFID none / best, KID x1e3 none, precision / recall none",
                "",
            ]
            lines += [
                "| cell | gFID none | gFID best | KID x1e3 | prec / rec |",
                "| --- | ---: | ---: | ---: | ---: |",
            ]
            for name, r in cells.items():
                ng, bg = r["no_guidance"], r["best_guidance"]
                if f"FID-{space}" in ng:
                    lines.append(
                        f"| {name} | {_fmt(ng[f'FID-{space}'])} | {_fmt(bg[f'FID-{space}'])} | "
                        f"{_fmt(ng[f'KID-{space}'] * 1e3)} | {_fmt(ng[f'precision-{space}'], 3)} / "
                        f"{_fmt(ng[f'recall-{space}'], 3)} |"
                    )
        lines += ["", "## Claim 2: gFID ratio VCQ / uniform per regime (first feature space, no guidance)", ""]
        lines += [
            "| domain, N, prior, steps, seed | uniform gFID | VCQ arm | VCQ gFID | ratio |",
            "| --- | ---: | --- | ---: | ---: |",
        ]
        by_setting: dict = {}
        for r in cells.values():
            c = r["cell"]
            setting = (c["domain"], c["num_train"], c["prior"], c["steps"], c["seed"])
            by_setting.setdefault(setting, {})[c["arm"]] = r["no_guidance"][f"FID-{r['guidance_sweep']['space']}"]
        for setting, arms in by_setting.items():
            base = arms.get(s.baseline_arm)
            for arm, fid in arms.items():
                if arm != s.baseline_arm and base:
                    lines.append(
                        f"| {', '.join(map(str, setting))} | {_fmt(base)} | {arm} | {_fmt(fid)} | {_fmt(fid / base, 3)} |"
                    )
        seeds = [r for r in cells.values() if r["cell"]["num_train"] == s.train_sizes[0] and r["cell"]["prior"] == s.main_prior
                 and r["cell"]["steps"] == s.prior_steps[0] and r["cell"]["domain"] == "fmnist"]  # fmt: skip
        arms_with_seeds = sorted({r["cell"]["arm"] for r in seeds})
        if any(len([r for r in seeds if r["cell"]["arm"] == a]) > 1 for a in arms_with_seeds):
            lines += ["", "## Seeds (main setting): mean ± standard deviation", ""]
            lines += ["| arm | gFID none | gFID best | NLL gap | PSNR |", "| --- | --- | --- | --- | --- |"]
            for arm in arms_with_seeds:
                rs = [r for r in seeds if r["cell"]["arm"] == arm]
                space = rs[0]["guidance_sweep"]["space"]
                psnr = [evals.get(f"fmnist-{arm}-{r['cell']['seed']}", {}).get("psnr") for r in rs]
                lines.append(
                    f"| {arm} | {mean_spread([r['no_guidance'][f'FID-{space}'] for r in rs])} | "
                    f"{mean_spread([r['best_guidance'][f'FID-{space}'] for r in rs])} | "
                    f"{mean_spread([r['nll']['gap_bits_per_image'] for r in rs])} | {mean_spread(psnr)} |"
                )
    lines += ["", "## Wall time per stage (s)", "", "| stage | wall (s) |", "| --- | ---: |"]
    for path in sorted(study.output_dir.glob("*.json"), key=lambda p: p.stat().st_mtime):
        value = json.loads(path.read_text())
        if isinstance(value, dict) and "wall_time_s" in value:
            lines.append(f"| {path.stem} | {value['wall_time_s']} |")
    if results.get("plan"):
        lines += [
            "",
            "## Planned cost per stage (calibrated on this machine)",
            "",
            "| stage | work | CPU (min) | wall (min) |",
        ]
        lines.append("| --- | --- | ---: | ---: |")
        for row in results["plan"]:
            lines.append(f"| {row['stage']} | {row['work']} | {row['cpu_s'] / 60:.1f} | {row['wall_s'] / 60:.1f} |")
    (report_dir / "results.md").write_text("\n".join(lines) + "\n")
    plot_report(results, study, report_dir)
    for png in study.output_dir.glob("samples-*.png"):
        shutil.copy(png, report_dir / png.name)


def plot_report(results: dict, study: Study, report_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = results.get("tokenizer_eval", {})
    if evals:
        figure, axis = plt.subplots(figsize=(8, 4.5), dpi=120)
        for tag, e in evals.items():
            if tag.endswith("-0") and tag.startswith("fmnist"):
                n = max(e["entropy"], key=int)
                h = e["entropy"][n]["conditional_entropy_bits"]
                axis.plot(np.arange(1, len(h) + 1), h, marker="o", ms=3, label=f"{tag} (N = {n})")
        axis.set_xlabel("position t (1-based)")
        axis.set_ylabel("H(x_t | x_<t) (bits)")
        axis.legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(report_dir / "entropy.png")
        plt.close(figure)
        figure, axes = plt.subplots(1, len(study.settings.probe_features), figsize=(12, 4), dpi=120, squeeze=False)
        for axis, kind in zip(axes[0], study.settings.probe_features):
            for tag, e in evals.items():
                if kind in e["probe"]:
                    axis.plot(e["probe"][kind]["ks"], np.array(e["probe"][kind]["test_accuracy"]) * 100, label=tag)
            axis.set_title(f"first-k probe, {kind} features")
            axis.set_xlabel("k")
            axis.set_ylabel("test top-1 (%)")
            axis.legend(fontsize=6)
        figure.tight_layout()
        figure.savefig(report_dir / "probe.png")
        plt.close(figure)
    cells = results.get("cells", {})
    if cells:
        figure, axis = plt.subplots(figsize=(8, 4.5), dpi=120)
        for name, r in cells.items():
            if r["cell"]["seed"] == study.settings.seeds[0] and r["cell"]["domain"] == "fmnist":
                axis.plot(r["nll"]["gap_per_position"], label=name, lw=1)
        axis.axhline(0, color="black", lw=0.6)
        axis.set_xlabel("position t (0-based)")
        axis.set_ylabel("held-out - train NLL (bits)")
        axis.set_title("Generalisation gap of the prior per position")
        axis.legend(fontsize=5)
        figure.tight_layout()
        figure.savefig(report_dir / "nll_gap.png")
        plt.close(figure)


# ------------------------------------------------------------------------------------------------------- CLI
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", type=Path, default=Path("runs/study-v2"))
    parser.add_argument("--smoke", action="store_true", help="Tiny settings, every code path (CI).")
    parser.add_argument("--in_process", action="store_true", help="Run example scripts in this process (smoke).")
    parser.add_argument("--jobs", type=int, default=2, help="Training/sampling processes run at once.")
    parser.add_argument("--report", type=Path, default=None, help="Write results.md/json and plots here.")
    parser.add_argument("--plan_only", action="store_true", help="Calibrate, print the plan and stop.")
    parser.add_argument(
        "--costs_from",
        type=Path,
        default=None,
        help="Reuse another study folder's calibrate.json (the folder or the file; same recipe and priors).",
    )
    parser.add_argument("--groups", type=str, default=",".join(GROUPS), help=f"Stage groups to run: {GROUPS}.")
    parser.add_argument("--best_vcq_arm", type=str, default=None, help="Skip choosing it from the main cells.")
    parser.add_argument(
        "--tokenizer_dirs",
        type=str,
        default="",
        help="[DOMAIN:]ARM=FOLDER[,...]: adopt already-trained tokenizers (saved VCQVQModel folders with their "
        "training_summary.json) for these arms (first seed; Fashion-MNIST unless DOMAIN:, e.g. emoji:linear=DIR) "
        "instead of training them; each folder's config must fit its arm (schedule, K_max, T, K_min).",
    )
    parser.add_argument("--arms", type=str, default=None, help="Comma-separated subset of the arms.")
    parser.add_argument("--train_sizes", type=str, default=None, help="Comma-separated N values (first = main).")
    parser.add_argument("--priors", type=str, default=None, help="Comma-separated prior sizes (tiny, small).")
    parser.add_argument("--prior_steps", type=str, default=None, help="Comma-separated prior lengths (first = main).")
    parser.add_argument(
        "--prior_plateau_chunk",
        type=int,
        default=None,
        help="Train priors until their train NLL stops falling: constant LR, chunks of this many steps, the arms of a "
        "setting in lockstep, --prior_steps as the cap.",
    )
    parser.add_argument(
        "--prior_plateau_tolerance",
        type=float,
        default=None,
        help="With --prior_plateau_chunk: stop once no arm's mean train NLL fell by this fraction in a chunk "
        "(default 0.01).",
    )
    parser.add_argument("--seeds", type=str, default=None, help="Comma-separated seeds (first = main).")
    parser.add_argument(
        "--probe_max_train",
        type=int,
        default=None,
        help="Train each first-k probe on at most this many training images (default 20000; a slice with "
        "--max_train_images 5000 probed on 5000).",
    )
    parser.add_argument(
        "--tokenizer_steps",
        type=int,
        default=None,
        help=f"Training steps of every tokenizer the study trains (default {TOKENIZER_V2_STEPS}, the recipe's). Match "
        "them to adopted tokenizers when a folder adds seeds or arms to an earlier one.",
    )
    parser.add_argument("--no_emoji", action="store_true", help="Leave the emoji domain out.")
    parser.add_argument(
        "--max_train_images",
        type=int,
        default=None,
        help="Use only the first N training images of each domain (codes, entropy, probe; also tokenizer training "
        "unless --tokenizer_dirs gives the tokenizers). For slices whose largest N is small.",
    )
    parser.add_argument(
        "--feature_spaces", type=str, default=None, help="Comma-separated feature spaces for every domain."
    )
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs = {args.jobs} must be >= 1")
    args.groups = tuple(g for g in args.groups.split(",") if g)
    unknown = set(args.groups) - set(GROUPS)
    if unknown:
        parser.error(f"--groups: unknown {sorted(unknown)}; expected a subset of {GROUPS}")
    items = [item for item in args.tokenizer_dirs.split(",") if item]
    if any("=" not in item or not item.split("=", 1)[1] for item in items):
        parser.error(f"--tokenizer_dirs expects [DOMAIN:]ARM=FOLDER[,...], got {args.tokenizer_dirs!r}")
    args.tokenizer_dirs = dict(item.split("=", 1) for item in items)
    if len(args.tokenizer_dirs) < len(items):
        parser.error(f"--tokenizer_dirs names an arm twice: {args.tokenizer_dirs!r}")
    return args


def settings_from_args(args: argparse.Namespace) -> StudySettings:
    settings = smoke_settings() if args.smoke else StudySettings()
    changes: dict = {}
    if args.arms:
        names = args.arms.split(",")
        known = {arm.name: arm for arm in settings.arms}
        if not set(names) <= set(known) or settings.baseline_arm not in names:
            raise ValueError(
                f"--arms {args.arms!r}: choose from {sorted(known)}, including '{settings.baseline_arm}'."
            )
        changes["arms"] = tuple(known[n] for n in names)
    if args.train_sizes:
        changes["train_sizes"] = tuple(int(v) for v in args.train_sizes.split(","))
    if args.priors:
        known = {p.name: p for p in settings.priors}
        names = args.priors.split(",")
        if not set(names) <= set(known):
            raise ValueError(f"--priors {args.priors!r}: choose from {sorted(known)}.")
        changes["priors"] = tuple(known[n] for n in names)
        if settings.main_prior not in names:
            changes["main_prior"] = names[0]
    if args.prior_steps:
        changes["prior_steps"] = tuple(int(v) for v in args.prior_steps.split(","))
    if args.seeds:
        changes["seeds"] = tuple(int(v) for v in args.seeds.split(","))
    if args.probe_max_train is not None:
        if args.probe_max_train < 2:
            raise ValueError(f"--probe_max_train = {args.probe_max_train} must be >= 2.")
        changes["probe_max_train"] = args.probe_max_train
    if args.tokenizer_steps is not None:
        if args.tokenizer_steps < 1:
            raise ValueError(f"--tokenizer_steps = {args.tokenizer_steps} must be >= 1.")
        changes["tokenizer"] = replace(settings.tokenizer, steps=args.tokenizer_steps)
    if args.prior_plateau_chunk is not None:
        if args.prior_plateau_chunk < 1:
            raise ValueError(f"--prior_plateau_chunk = {args.prior_plateau_chunk} must be >= 1.")
        changes["prior_plateau_chunk"] = args.prior_plateau_chunk
    if args.prior_plateau_tolerance is not None:
        tolerance = args.prior_plateau_tolerance
        if args.prior_plateau_chunk is None:
            raise ValueError("--prior_plateau_tolerance needs --prior_plateau_chunk.")
        if not (math.isfinite(tolerance) and 0.0 <= tolerance < 1.0):
            raise ValueError(f"--prior_plateau_tolerance = {tolerance} is out of range: it must be in [0, 1).")
        changes["prior_plateau_tolerance"] = tolerance
    domains = {k: v for k, v in settings.domains.items() if not (args.no_emoji and k == "emoji")}
    if args.max_train_images is not None:
        if args.max_train_images < max(changes.get("train_sizes", settings.train_sizes)):
            raise ValueError(f"--max_train_images = {args.max_train_images} is below the largest training-set size N.")
        domains = {k: replace(v, max_train_samples=args.max_train_images) for k, v in domains.items()}
    if args.feature_spaces:
        from vcq_hf.metrics import FEATURE_EXTRACTORS

        spaces = tuple(args.feature_spaces.split(","))
        if not set(spaces) <= set(FEATURE_EXTRACTORS):
            raise ValueError(f"--feature_spaces {args.feature_spaces!r}: choose from {sorted(FEATURE_EXTRACTORS)}.")
        domains = {
            k: replace(
                v, feature_spaces=spaces, classifier_space=v.classifier_space if v.classifier_space in spaces else None
            )
            for k, v in domains.items()
        }
    if domains != settings.domains:
        changes["domains"] = domains
    for name in ("train_sizes", "prior_steps"):
        if any(v < 1 for v in changes.get(name, (1,))):
            raise ValueError(f"--{name} values must be >= 1, got {changes[name]}.")
    settings = replace(settings, **changes)
    return adopt_tokenizers(settings, args.tokenizer_dirs) if args.tokenizer_dirs else settings


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    settings = settings_from_args(args)
    start = time.perf_counter()
    results = run_study(
        args.output_dir,
        settings,
        args.jobs,
        args.report,
        in_process=args.in_process or args.smoke,
        groups=args.groups,
        best_vcq_arm=args.best_vcq_arm,
        plan_only=args.plan_only,
        costs_from=args.costs_from,
    )
    print(f"study finished in {time.perf_counter() - start:.0f} s; results in {args.output_dir}")
    return results


if __name__ == "__main__":
    main()
