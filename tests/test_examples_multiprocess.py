"""A real 2-process data-parallel run of examples/train_ar.py, extract_codes.py and sample.py on CPU (gloo),
launched like a user would.

`ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2` starts two ranks in one torch.distributed
group on CPU. (`--cpu --num_processes 2` silently starts one process, and `--multi_gpu` without ACCELERATE_USE_CPU
starts two unrelated processes that both save.) The test checks that both ranks took part in one run: each reports
world size 2 and bit-identical weights, there is one checkpoint set, and the global batch is 2x the per-device one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from accelerate.state import AcceleratorState, GradientState


EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
FIXTURE_IMAGES = Path(__file__).resolve().parent / "fixtures" / "images"
sys.path.insert(0, str(EXAMPLES_DIR))

import extract_codes  # noqa: E402
from vcq_hf.configuration_vcq_vq import VCQVQConfig  # noqa: E402
from vcq_hf.image_processing_vcq import VCQImageProcessor  # noqa: E402
from vcq_hf.modeling_vcq_vq import VCQVQModel  # noqa: E402


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_launch(args: list[str], timeout: float, cwd: Path) -> subprocess.CompletedProcess:
    """Run in its own process group; kill the whole group (both ranks) on timeout."""
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # fmt: skip
    env.pop("ACCELERATE_CONFIG_FILE", None)
    process = subprocess.Popen(
        args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"accelerate launch timed out after {timeout} s:\n{output[-4000:]}")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(args, process.returncode, output, None)


@pytest.fixture
def codes_dir(tmp_path):
    """A tiny random tokenizer and the codes of the 32 fixture images (3 classes)."""
    data = tmp_path / "data"
    for path in sorted(FIXTURE_IMAGES.glob("*.png")):
        kind = path.stem.split("_")[0]
        (data / "train" / kind).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, data / "train" / kind / path.name)
    tokenizer = tmp_path / "tokenizer"
    config = VCQVQConfig.from_preset("tiny")
    VCQVQModel(config).save_pretrained(tokenizer)
    VCQImageProcessor(image_size=config.image_size).save_pretrained(tokenizer)
    out = tmp_path / "codes"
    try:
        extract_codes.main(
            extract_codes.parse_args(
                ["--vq_model_path", str(tokenizer), "--train_data_dir", str(data), "--output_dir", str(out)]
            )  # fmt: skip
        )
    finally:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
    return out


@pytest.mark.subprocess
def test_train_ar_two_process_ddp(codes_dir, tmp_path):
    accelerate = Path(sys.executable).parent / "accelerate"
    launcher = [str(accelerate)] if accelerate.exists() else [sys.executable, "-m", "accelerate.commands.launch"]
    out = tmp_path / "ddp"
    command = [
        *launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--main_process_port", str(free_port()), "--mixed_precision", "no", "--dynamo_backend", "no",
        str(EXAMPLES_DIR / "train_ar.py"),
        "--codes_dir", str(codes_dir), "--model_config", "tiny", "--train_batch_size", "4",
        "--max_train_steps", "4", "--checkpointing_steps", "2", "--checkpoints_total_limit", "1",
        "--validation_steps", "1000", "--num_validation_images_per_class", "1", "--output_dir", str(out),
    ]  # fmt: skip
    if launcher[0] != str(accelerate):
        command.remove("launch")
    result = run_launch(command, timeout=240, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:]

    reports = [json.loads((out / "logs" / f"rank-{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["process_index"] for r in reports] == [0, 1]
    assert all(r["num_processes"] == 2 and "MULTI_CPU" in r["distributed_type"] for r in reports)
    assert all(r["global_step"] == 4 for r in reports)
    assert reports[0]["weights_sha256"] == reports[1]["weights_sha256"]  # gradients were all-reduced

    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["num_processes"] == 2 and summary["total_batch_size"] == 8
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint-")) == ["checkpoint-4"]
    assert sorted(p.name for p in (out / "checkpoint-4").glob("random_states_*.pkl")) == [
        "random_states_0.pkl",
        "random_states_1.pkl",
    ]
    assert (out / "model_index.json").is_file() and (out / "transformer" / "config.json").is_file()

    # The same pipeline and codes through the two gathering scripts on 2 processes (gather_object, no shared
    # files): identical to one process, with uneven shards (5 samples in batches of 2 -> ranks hold 3 and 2).
    import sample

    def launch(script: str, *args: str) -> None:
        command = [*launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                   "--main_process_port", str(free_port()), "--mixed_precision", "no", "--dynamo_backend", "no",
                   str(EXAMPLES_DIR / script), *args]  # fmt: skip
        if launcher[0] != str(accelerate):
            command.remove("launch")
        result = run_launch(command, timeout=240, cwd=tmp_path)
        assert result.returncode == 0, result.stdout[-4000:]

    meta = json.loads((codes_dir / "vcq_meta.json").read_text())
    launch("extract_codes.py", "--vq_model_path", meta["vq_model_path"], "--train_data_dir", meta["train_data_dir"],
           "--output_dir", str(tmp_path / "codes2"), "--batch_size", "5")  # fmt: skip
    import datasets

    one, two = datasets.load_from_disk(str(codes_dir)), datasets.load_from_disk(str(tmp_path / "codes2"))
    assert one["codes"] == two["codes"] and one["label"] == two["label"] and len(one) == 32

    launch("sample.py", "--pipeline_path", str(out), "--output_dir", str(tmp_path / "s2"), "--num_samples", "5",
           "--batch_size", "2", "--no_png")  # fmt: skip
    try:
        sample.main(sample.parse_args(["--pipeline_path", str(out), "--output_dir", str(tmp_path / "s1"),
                                       "--num_samples", "5", "--batch_size", "5", "--no_png"]))  # fmt: skip
    finally:
        AcceleratorState._reset_state(True)
    import numpy as np

    a, b = np.load(tmp_path / "s1" / "samples.npz"), np.load(tmp_path / "s2" / "samples.npz")
    for key in ("arr_0", "labels", "codes"):
        assert np.array_equal(a[key], b[key]), key
    assert sorted(p.name for p in (tmp_path / "s2").iterdir()) == ["sample_info.json", "samples.npz"]
