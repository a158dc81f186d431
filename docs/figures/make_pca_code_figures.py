"""Reproduce docs/figures/{entropy,probe}_fmnist_pca_{constant,log}.png (the measurement instruments on real data).

Until a trained VCQ tokenizer's codes are available, a transparent stand-in tokenizer makes real code sets: the
Fashion-MNIST images are projected on their first T = 32 principal components (fitted on the train split) and
component t is quantised into K_t equal-mass bins (train quantiles), for a constant (K = 256) and a log (2 -> 256)
schedule. The instruments then run from the CLI exactly as on extracted codes:

    OMP_NUM_THREADS=1 python docs/figures/make_pca_code_figures.py /tmp/pca_codes
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from vcq_hf.metrics import load_fashion_mnist_arrays
from vcq_hf.schedules import codebook_sizes


def main(work_dir: Path, num_tokens: int = 32) -> None:
    work_dir.mkdir(parents=True, exist_ok=True)
    figures = Path(__file__).resolve().parent
    x_train, y_train = load_fashion_mnist_arrays("train")
    x_test, y_test = load_fashion_mnist_arrays("test")
    x_train = x_train.reshape(len(x_train), -1) / 255.0
    x_test = x_test.reshape(len(x_test), -1) / 255.0
    mean = x_train.mean(0)
    _, vectors = np.linalg.eigh(np.cov((x_train - mean).T))
    components = vectors[:, ::-1][:, :num_tokens]  # leading principal directions
    p_train, p_test = (x_train - mean) @ components, (x_test - mean) @ components
    np.save(work_dir / "train_labels.npy", y_train)
    np.save(work_dir / "test_labels.npy", y_test)
    for kind in ("constant", "log"):
        sizes = codebook_sizes(num_tokens, 2, 256, kind)
        codes = {
            "train": np.empty((len(p_train), num_tokens), np.int32),
            "test": np.empty((len(p_test), num_tokens), np.int32),
        }
        for t, k in enumerate(sizes):
            edges = np.quantile(p_train[:, t], np.linspace(0, 1, k + 1)[1:-1])
            codes["train"][:, t] = np.searchsorted(edges, p_train[:, t])
            codes["test"][:, t] = np.searchsorted(edges, p_test[:, t])
        for split, array in codes.items():
            np.save(work_dir / f"{kind}_{split}.npy", array)
        (work_dir / f"{kind}_sizes.json").write_text(json.dumps({"codebook_sizes": list(sizes)}))
        common = ["--codebook-sizes-from", str(work_dir / f"{kind}_sizes.json")]
        title = f"Fashion-MNIST train, PCA-quantile codes, {kind} schedule (T={num_tokens})"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "vcq_hf.cli",
                "analyze",
                "entropy",
                "--codes",
                str(work_dir / f"{kind}_train.npy"),
                *common,
                "--output-dir",
                str(work_dir / f"entropy_{kind}"),
                "--title",
                title,
            ],
            check=True,
        )
        subprocess.run(
            [
                sys.executable,
                "-m",
                "vcq_hf.cli",
                "analyze",
                "probe",
                "--codes",
                str(work_dir / f"{kind}_train.npy"),
                "--labels",
                str(work_dir / "train_labels.npy"),
                "--test-codes",
                str(work_dir / f"{kind}_test.npy"),
                "--test-labels",
                str(work_dir / "test_labels.npy"),
                *common,
                "--num-samples",
                "60000",
                "--max-train-samples",
                "20000",
                "--ks",
                "0,1,2,4,8,16,32",
                "--output-dir",
                str(work_dir / f"probe_{kind}"),
                "--title",
                f"Fashion-MNIST, PCA-quantile codes, {kind} schedule: linear probe",
            ],
            check=True,
        )
        (figures / f"entropy_fmnist_pca_{kind}.png").write_bytes(
            (work_dir / f"entropy_{kind}" / "entropy.png").read_bytes()
        )
        (figures / f"probe_fmnist_pca_{kind}.png").write_bytes((work_dir / f"probe_{kind}" / "probe.png").read_bytes())


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "pca_codes"))
