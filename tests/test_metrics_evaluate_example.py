import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate.state import AcceleratorState, GradientState

from vcq_hf import VCQConfig, VCQForCausalLM, VCQVQConfig, VCQVQModel
from vcq_hf.metrics import compute_generation_metrics, load_adm_npz, load_feature_extractor, save_adm_npz
from vcq_hf.pipeline_vcq import VCQPipeline


def load_example():
    """examples/evaluate_pipeline.py as a module."""
    path = Path(__file__).resolve().parent.parent / "examples" / "evaluate_pipeline.py"
    spec = importlib.util.spec_from_file_location("vcq_examples_evaluate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


evaluate_example = load_example()


@pytest.fixture(autouse=True)
def reset_accelerate_state():
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory):
    torch.manual_seed(0)
    vq_config = VCQVQConfig.from_preset("tiny")
    pipeline = VCQPipeline(
        vq_model=VCQVQModel(vq_config).eval(),
        transformer=VCQForCausalLM(VCQConfig.from_vq_config(vq_config, preset="tiny")).eval(),
        id2label={0: "a", 1: "b", 2: "c"},
    )
    folder = tmp_path_factory.mktemp("pipeline")
    pipeline.save_pretrained(folder)
    return folder


@pytest.mark.filterwarnings("ignore:FID from")
def test_evaluate_example_writes_metrics_and_npz(pipeline_dir, tmp_path):
    rng = np.random.default_rng(0)
    save_adm_npz(tmp_path / "reference.npz", rng.integers(0, 256, size=(12, 16, 16, 3), dtype=np.uint8))
    out = tmp_path / "eval"
    argv = ["--pipeline_path", str(pipeline_dir), "--output_dir", str(out), "--num_samples_per_class", "2"]
    argv += ["--reference_dataset", str(tmp_path / "reference.npz"), "--feature_extractors", "fmnist-cnn"]
    argv += ["--batch_size", "4", "--kid_subsets", "3", "--save_npz", "--class_labels", "0", "c"]
    result = evaluate_example.main(evaluate_example.parse_args(argv))

    written = json.loads((out / "metrics.json").read_text())
    assert written["metrics"] == pytest.approx(result["metrics"])
    assert written["num_samples"] == 4 and written["num_reference"] == 12 and written["classes"] == [0, 2]
    assert set(written["metrics"]) >= {"FID-FMNIST-CNN", "KID-FMNIST-CNN", "precision-FMNIST-CNN", "IS-FMNIST-CNN"}
    assert written["timing_s"]["total_wall"] > 0

    # The metrics are those of the saved samples against the reference, recomputed independently.
    samples, labels = load_adm_npz(out / "samples.npz")
    assert samples.shape[0] == 4 and samples.shape[-1] == 3
    np.testing.assert_array_equal(labels, [0, 0, 2, 2])
    extractor = load_feature_extractor("fmnist-cnn")
    fake_features, fake_logits = extractor.extract(samples)
    real_features, _ = extractor.extract(load_adm_npz(tmp_path / "reference.npz")[0])
    expected = compute_generation_metrics(
        real_features, fake_features, fake_logits, extractor_name="FMNIST-CNN", kid_subsets=3, kid_subset_size=1000
    )
    for key in ("FID-FMNIST-CNN", "KID-FMNIST-CNN", "IS-FMNIST-CNN", "recall-FMNIST-CNN"):
        assert written["metrics"][key] == pytest.approx(expected[key], rel=1e-5, abs=1e-9)


def test_evaluate_example_argument_errors(pipeline_dir, tmp_path):
    base = ["--pipeline_path", str(pipeline_dir), "--output_dir", str(tmp_path), "--reference_dataset", "digits"]
    with pytest.raises(ValueError, match="num_samples_per_class"):
        evaluate_example.parse_args([*base, "--num_samples_per_class", "0"])
    with pytest.raises(ValueError, match="feature_extractors"):
        evaluate_example.parse_args([*base, "--feature_extractors", "clip"])
    with pytest.raises(ValueError, match="class_accuracy"):
        evaluate_example.parse_args([*base, "--feature_extractors", "effnet-lite0", "--class_accuracy"])
    with pytest.raises(ValueError, match="model_index.json"):
        evaluate_example.parse_args([*base[2:], "--pipeline_path", str(tmp_path)])
    with pytest.raises(ValueError, match="reference_dataset"):
        evaluate_example.parse_args([*base[:4], "--reference_dataset", str(tmp_path / "absent")])
