"""Saved folders load through the generic entry points: DiffusionPipeline and the transformers Auto classes, with the
installed library and, with `trust_remote_code=True`, in a Python where vcq_hf cannot be imported (issue 15.2/15.3).

The no-vcq_hf runs are subprocesses that block the package (`sys.modules["vcq_hf"] = None`, no `src` on the path) and
use a fresh `HF_MODULES_CACHE`, so that only the code saved in the folder can serve them.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoImageProcessor, AutoModel

from vcq_hf import VCQImageProcessor, VCQPipeline, VCQVQModel
from vcq_hf.hub.pipeline import REMOTE_CODE_FILES, to_library_layout

from .test_pipeline_vcq import get_dummy_components


DEMO_DIR = Path(__file__).resolve().parents[1] / "src" / "vcq_hf" / "demo"
BLOCK_VCQ_HF = "import sys\nsys.modules['vcq_hf'] = None  # any `import vcq_hf...` now raises ImportError\n"
CHECK_NO_VCQ_HF = (
    "\nloaded = sorted(m for m, mod in sys.modules.items() if m.split('.')[0] == 'vcq_hf' and mod is not None)\n"
    "assert not loaded, loaded\n"
)


def run_python(code: str, tmp_path: Path, with_vcq_hf: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    if not with_vcq_hf:
        env["PYTHONPATH"] = ""
        code = BLOCK_VCQ_HF + code + CHECK_NO_VCQ_HF
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, list[list[int]]]:
    """A saved tiny pipeline and the codes the library pipeline samples for classes [0, 2], seed 0."""
    pipe = VCQPipeline(**get_dummy_components())
    pipe.set_progress_bar_config(disable=True)
    folder = tmp_path_factory.mktemp("remote") / "pipe"
    pipe.save_pretrained(folder)
    codes = pipe(class_labels=[0, 2], generator=torch.manual_seed(0), output_type="latent").images
    return folder, codes.tolist()


def test_saved_folder_layout(saved):
    folder, _ = saved
    model_index = json.loads((folder / "model_index.json").read_text())
    assert model_index["_class_name"] == ["pipeline_vcq", "VCQPipeline"]
    assert model_index["transformer"] == ["modeling_vcq", "VCQForCausalLM"]
    assert model_index["vq_model"] == ["modeling_vcq_vq", "VCQVQModel"]
    for part, module_files in REMOTE_CODE_FILES.items():
        for module_file in module_files:
            assert (folder / part / module_file).is_file()
    assert (folder / "schedules.py").is_file() and (folder / "vq_model" / "quantizer.py").is_file()
    processor = json.loads((folder / "vq_model" / "preprocessor_config.json").read_text())
    assert processor["auto_map"] == {"AutoImageProcessor": "image_processing_vcq.VCQImageProcessor"}
    assert processor["image_size"] == json.loads((folder / "vq_model" / "config.json").read_text())["image_size"]


def test_library_loads_the_folder_without_running_its_code(saved):
    folder, codes = saved
    pipe = VCQPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe) is VCQPipeline and type(pipe.vq_model) is VCQVQModel
    out = pipe(class_labels=[0, 2], generator=torch.manual_seed(0), output_type="latent").images
    assert out.tolist() == codes
    # the Auto classes resolve the tokenizer folder through the installed library (no trust_remote_code)
    assert type(AutoModel.from_pretrained(folder / "vq_model")) is VCQVQModel
    assert type(AutoImageProcessor.from_pretrained(folder / "vq_model")) is VCQImageProcessor


def test_folder_saved_before_the_remote_code_layout_still_loads(saved, tmp_path):
    folder, codes = saved
    old = tmp_path / "old"
    shutil.copytree(folder, old, ignore=shutil.ignore_patterns("*.py", "preprocessor_config.json"))
    model_index = to_library_layout(json.loads((old / "model_index.json").read_text()))
    assert model_index["_class_name"] == "VCQPipeline" and model_index["vq_model"][0] == "vcq_hf.modeling_vcq_vq"
    (old / "model_index.json").write_text(json.dumps(model_index))
    pipe = VCQPipeline.from_pretrained(old)
    pipe.set_progress_bar_config(disable=True)
    assert pipe(class_labels=[0, 2], generator=torch.manual_seed(0), output_type="latent").images.tolist() == codes


@pytest.mark.subprocess
def test_diffusion_pipeline_without_vcq_hf(saved, tmp_path):
    folder, codes = saved
    code = f"""
import torch
from diffusers import DiffusionPipeline
try:
    DiffusionPipeline.from_pretrained({str(folder)!r})
except ValueError as err:
    assert "trust_remote_code=True" in str(err), err
else:
    raise AssertionError("loaded custom code without trust_remote_code")
pipe = DiffusionPipeline.from_pretrained({str(folder)!r}, trust_remote_code=True)
pipe.set_progress_bar_config(disable=True)
assert type(pipe).__name__ == "VCQPipeline" and type(pipe.transformer).__name__ == "VCQForCausalLM"
assert pipe(class_labels=[0, 2], generator=torch.manual_seed(0), output_type="latent").images.tolist() == {codes}
image = pipe(class_labels="golden retriever", generator=torch.manual_seed(1)).images[0]
assert image.size == (pipe.vq_model.config.image_size,) * 2
"""
    result = run_python(code, tmp_path, with_vcq_hf=False)
    assert "Expected types" not in result.stderr, result.stderr[-2000:]


@pytest.mark.subprocess
def test_auto_classes_without_vcq_hf(saved, tmp_path):
    folder, codes = saved
    code = f"""
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModel, AutoModelForCausalLM
vq = AutoModel.from_pretrained({str(folder / "vq_model")!r}, trust_remote_code=True).eval()
processor = AutoImageProcessor.from_pretrained({str(folder / "vq_model")!r}, trust_remote_code=True)
prior = AutoModelForCausalLM.from_pretrained({str(folder / "transformer")!r}, trust_remote_code=True).eval()
assert (type(vq).__name__, type(processor).__name__, type(prior).__name__) == (
    "VCQVQModel", "VCQImageProcessor", "VCQForCausalLM")
pixel_values = processor(Image.new("RGB", (20, 30), (200, 40, 10)), return_tensors="pt").pixel_values
with torch.no_grad():
    ids = vq.encode(pixel_values).codes
    images = vq.decode(torch.tensor({codes})).sample
    logits = prior(input_ids=torch.tensor(prior.config.class_token_ids([0]))[:, None]).logits
assert ids.shape == (1, vq.config.num_image_tokens) and images.shape[-1] == vq.config.image_size
assert logits.shape[-1] == prior.config.vocab_size
"""
    run_python(code, tmp_path, with_vcq_hf=False)


@pytest.mark.subprocess
def test_diffusion_pipeline_with_vcq_hf_installed(saved, tmp_path):
    # With vcq_hf importable the generic entry runs the same code (saved with the folder) and samples the same codes.
    folder, codes = saved
    code = f"""
import torch
from diffusers import DiffusionPipeline
pipe = DiffusionPipeline.from_pretrained({str(folder)!r}, trust_remote_code=True)
pipe.set_progress_bar_config(disable=True)
assert pipe(class_labels=[0, 2], generator=torch.manual_seed(0), output_type="latent").images.tolist() == {codes}
"""
    run_python(code, tmp_path, with_vcq_hf=True)


@pytest.mark.subprocess
def test_bundled_demo_loads_without_vcq_hf(tmp_path):
    code = f"""
import torch
from diffusers import DiffusionPipeline
from transformers import AutoImageProcessor
pipe = DiffusionPipeline.from_pretrained({str(DEMO_DIR)!r}, trust_remote_code=True)
pipe.set_progress_bar_config(disable=True)
codes = pipe(class_labels=["Trouser"], generator=torch.manual_seed(0), output_type="latent").images
assert codes.shape == (1, pipe.transformer.config.num_image_tokens)
processor = AutoImageProcessor.from_pretrained({str(DEMO_DIR / "vq_model")!r}, trust_remote_code=True)
assert processor.image_size == pipe.vq_model.config.image_size
"""
    run_python(code, tmp_path, with_vcq_hf=False)
