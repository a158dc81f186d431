"""Tests of `VCQPipeline` on tiny random models: sampling loop, guidance, determinism, labels, files and the Hub."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from vcq_hf import VCQConfig, VCQForCausalLM, VCQMask, VCQVQConfig, VCQVQModel
from vcq_hf.pipeline_vcq import VCQPipeline, VCQPipelineOutput, guidance_scales


ID2LABEL = {0: "tench, Tinca tinca", 1: "golden retriever", 2: "sea anemone"}


def get_dummy_components(seed: int = 0) -> dict:
    """Tiny random tokenizer + prior with a matching schedule (T = 5, K_t = [3, 6, 11, 20, 37], 3 classes)."""
    torch.manual_seed(seed)
    vq_config = VCQVQConfig.from_preset("tiny")
    vq_model = VCQVQModel(vq_config).eval()
    transformer = VCQForCausalLM(VCQConfig.from_vq_config(vq_config, preset="tiny")).eval()
    return {"vq_model": vq_model, "transformer": transformer, "id2label": dict(ID2LABEL)}


@pytest.fixture(scope="module")
def pipe() -> VCQPipeline:
    pipeline = VCQPipeline(**get_dummy_components())
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def reference_greedy_codes(pipe: VCQPipeline, labels: list[int], guidance_scale: float) -> torch.Tensor:
    """Greedy CFG decoding without a KV cache: full cond and null forwards at every step (slow, obviously right)."""
    config = pipe.transformer.config
    mask = VCQMask(codebook_sizes=config.codebook_sizes, prompt_length=1)
    cond = torch.tensor(config.class_token_ids(labels))[:, None]
    null = torch.full_like(cond, config.null_class_token_id)
    for _ in range(config.num_image_tokens):
        cond_logits = pipe.transformer(input_ids=cond).logits[:, -1].float()
        null_logits = pipe.transformer(input_ids=null).logits[:, -1].float()
        logits = null_logits + guidance_scale * (cond_logits - null_logits)
        next_codes = mask(cond, logits).argmax(-1, keepdim=True)
        cond = torch.cat([cond, next_codes], 1)
        null = torch.cat([null, next_codes], 1)
    return cond[:, 1:]


# ------------------------------------------------------------------------------------------------ construction


def test_mismatched_schedules_are_refused_showing_both():
    components = get_dummy_components()
    other = VCQConfig.from_preset("tiny")  # K_t = [2, 4, 8, 16, 16]
    with pytest.raises(ValueError) as info:
        VCQPipeline(components["vq_model"], VCQForCausalLM(other))
    message = str(info.value)
    assert "[3, 6, 11, 20, 37]" in message and "[2, 4, 8, 16, 16]" in message


def test_id2label_out_of_range_is_refused():
    components = get_dummy_components()
    components["id2label"] = {0: "a", 3: "d"}
    with pytest.raises(ValueError, match=r"id2label key 3 is outside .*\[0, num_classes = 3\)"):
        VCQPipeline(**components)


def test_components_and_offload_sequence(pipe):
    modules = {name for name, value in pipe.components.items() if isinstance(value, torch.nn.Module)}
    assert modules == {"vq_model", "transformer"} and set(pipe.components) == modules | {"id2label"}
    assert set(pipe.model_cpu_offload_seq.split("->")) == modules
    assert pipe.num_image_tokens == 5 and pipe.num_classes == 3


# ------------------------------------------------------------------------------------------------ labels


def test_get_label_ids_string_is_one_label(pipe):
    assert pipe.get_label_ids("sea anemone") == [2]  # DiT's list("sea anemone") would be 11 characters
    assert pipe.get_label_ids(["golden retriever", "tench"]) == [1, 0]
    assert pipe.get_label_ids("Tinca tinca") == [0]  # comma-separated synonym
    assert pipe.get_label_ids("Golden Retriever") == [1]  # case-insensitive fallback


def test_unknown_label_lists_close_matches(pipe):
    with pytest.raises(ValueError, match=r"Unknown class name 'golden retreiver'.*Did you mean: 'golden retriever'"):
        pipe.get_label_ids("golden retreiver")


def test_class_labels_mix_ids_names_and_checks_range(pipe):
    out = pipe(class_labels=[2, "tench"], generator=torch.manual_seed(0), output_type="latent")
    same = pipe(class_labels=[2, 0], generator=torch.manual_seed(0), output_type="latent")
    assert torch.equal(out.codes, same.codes)
    with pytest.raises(ValueError, match=r"class label 3 \(class_labels\[1\]\) is out of range.*\[0, 3\)"):
        pipe(class_labels=[0, 3])
    with pytest.raises(ValueError, match="out of range"):
        pipe(class_labels=-1)
    with pytest.raises(ValueError, match="empty"):
        pipe(class_labels=[])


# ------------------------------------------------------------------------------------------------ outputs


@pytest.mark.parametrize("output_type", ["pil", "np", "pt", "latent"])
def test_output_types(pipe, output_type):
    out = pipe(class_labels=[0, 1, 2], output_type=output_type, generator=torch.manual_seed(1))
    assert isinstance(out, VCQPipelineOutput)
    assert out.codes.shape == (3, 5) and out.codes.dtype == torch.long
    limits = torch.tensor(pipe.transformer.config.codebook_sizes)
    assert bool((out.codes >= 0).all()) and bool((out.codes < limits).all())
    if output_type == "pil":
        assert len(out.images) == 3 and all(isinstance(im, Image.Image) and im.size == (12, 12) for im in out.images)
    elif output_type == "np":
        assert out.images.shape == (3, 12, 12, 3) and 0.0 <= out.images.min() <= out.images.max() <= 1.0
    elif output_type == "pt":
        assert out.images.shape == (3, 3, 12, 12) and 0.0 <= float(out.images.min()) <= float(out.images.max()) <= 1
    else:
        assert torch.equal(out.images, out.codes)


def test_images_decode_the_codes(pipe):
    out = pipe(class_labels=[1, 2], output_type="pt", generator=torch.manual_seed(3))
    expected = (pipe.vq_model.decode(out.codes).sample / 2 + 0.5).clamp(0, 1)
    torch.testing.assert_close(out.images, expected)


def test_return_dict_false(pipe):
    images, codes = pipe(class_labels=0, output_type="np", return_dict=False, generator=torch.manual_seed(0))
    assert images.shape == (1, 12, 12, 3) and codes.shape == (1, 5)


def test_num_images_per_class_order(pipe):
    gens = [torch.Generator().manual_seed(s) for s in range(4)]
    out = pipe(class_labels=[0, 2], num_images_per_class=2, generator=gens, output_type="latent")
    gens = [torch.Generator().manual_seed(s) for s in range(4)]
    same = pipe(class_labels=[0, 0, 2, 2], generator=gens, output_type="latent")
    assert out.codes.shape == (4, 5) and torch.equal(out.codes, same.codes)


# ------------------------------------------------------------------------------------------------ determinism


def test_same_seed_same_images_other_seed_differs(pipe):
    a = pipe(class_labels=[0, 1, 2, 0], generator=torch.manual_seed(7), output_type="np")
    b = pipe(class_labels=[0, 1, 2, 0], generator=torch.manual_seed(7), output_type="np")
    c = pipe(class_labels=[0, 1, 2, 0], generator=torch.manual_seed(8), output_type="np")
    assert torch.equal(a.codes, b.codes) and np.array_equal(a.images, b.images)
    assert not torch.equal(a.codes, c.codes)


@pytest.mark.parametrize("guidance_scale", [1.0, 3.0])
def test_generator_list_makes_each_image_batch_independent(pipe, guidance_scale):
    seeds, labels = [11, 12, 13, 14], [0, 1, 2, 1]
    batch = pipe(
        class_labels=labels,
        guidance_scale=guidance_scale,
        generator=[torch.Generator().manual_seed(s) for s in seeds],
        output_type="pt",
    )
    for i in (0, 2, 3):
        alone = pipe(
            class_labels=[labels[i]],
            guidance_scale=guidance_scale,
            generator=[torch.Generator().manual_seed(seeds[i])],
            output_type="pt",
        )
        assert torch.equal(alone.codes[0], batch.codes[i])
        torch.testing.assert_close(alone.images[0], batch.images[i], atol=1e-5, rtol=1e-5)
    pair = pipe(
        class_labels=[labels[3], labels[0]],
        guidance_scale=guidance_scale,
        generator=[torch.Generator().manual_seed(seeds[3]), torch.Generator().manual_seed(seeds[0])],
        output_type="latent",
    )
    assert torch.equal(pair.codes, batch.codes[[3, 0]])


def test_generator_list_length_must_match(pipe):
    with pytest.raises(ValueError, match="list of 2 generators but 3 images"):
        pipe(class_labels=[0, 1, 2], generator=[torch.Generator(), torch.Generator()])


# ------------------------------------------------------------------------------------------------ decode loop


def test_greedy_without_guidance_equals_transformer_generate(pipe):
    labels = [0, 1, 2, 2]
    out = pipe(class_labels=labels, guidance_scale=1.0, do_sample=False, output_type="latent")
    reference = pipe.transformer.generate(pipe.transformer.build_input_ids(labels), do_sample=False)
    assert torch.equal(out.codes, reference[:, 1:])


@pytest.mark.parametrize("guidance_scale", [0.0, 2.5, 6.0])
def test_batched_cfg_over_kv_cache_equals_uncached_reference(pipe, guidance_scale):
    labels = [2, 0, 1]
    out = pipe(class_labels=labels, guidance_scale=guidance_scale, do_sample=False, output_type="latent")
    assert torch.equal(out.codes, reference_greedy_codes(pipe, labels, guidance_scale))


def test_guidance_one_runs_only_the_conditional_half(pipe):
    batch_sizes = []
    handle = pipe.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: batch_sizes.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        pipe(class_labels=[0, 1, 2], guidance_scale=1.0, output_type="latent")
        assert batch_sizes == [3] * 5
        batch_sizes.clear()
        pipe(class_labels=[0, 1, 2], guidance_scale=4.0, output_type="latent")
        assert batch_sizes == [6] * 5  # one forward per position, conditional and null rows stacked
    finally:
        handle.remove()


def test_top_k_one_sampling_is_greedy(pipe):
    greedy = pipe(class_labels=[0, 1, 2], guidance_scale=3.0, do_sample=False, output_type="latent")
    top1 = pipe(
        class_labels=[0, 1, 2], guidance_scale=3.0, top_k=1, generator=torch.manual_seed(0), output_type="latent"
    )
    assert torch.equal(greedy.codes, top1.codes)


def test_tiny_top_p_and_low_temperature_are_greedy(pipe):
    greedy = pipe(class_labels=[0, 2], guidance_scale=2.0, do_sample=False, output_type="latent")
    nucleus = pipe(
        class_labels=[0, 2], guidance_scale=2.0, top_p=1e-6, generator=torch.manual_seed(0), output_type="latent"
    )
    cold = pipe(
        class_labels=[0, 2], guidance_scale=2.0, temperature=1e-4, generator=torch.manual_seed(0), output_type="latent"
    )
    assert torch.equal(greedy.codes, nucleus.codes) and torch.equal(greedy.codes, cold.codes)


def test_guidance_schedules():
    assert guidance_scales(4.0, 3, "constant") == [4.0, 4.0, 4.0]
    assert guidance_scales(4.0, 3, "linear") == pytest.approx([2.0, 3.0, 4.0])
    assert guidance_scales(1.0, 4, "linear") == [1.0] * 4
    with pytest.raises(ValueError, match="cosine"):
        guidance_scales(4.0, 3, "cosine")


def test_linear_schedule_uses_per_position_scales(pipe):
    out = pipe(
        class_labels=[1, 2], guidance_scale=5.0, guidance_schedule="linear", do_sample=False, output_type="latent"
    )
    config = pipe.transformer.config
    scales = guidance_scales(5.0, config.num_image_tokens, "linear")
    mask = VCQMask(codebook_sizes=config.codebook_sizes, prompt_length=1)
    cond = torch.tensor(config.class_token_ids([1, 2]))[:, None]
    null = torch.full_like(cond, config.null_class_token_id)
    for scale in scales:
        c = pipe.transformer(input_ids=cond).logits[:, -1].float()
        u = pipe.transformer(input_ids=null).logits[:, -1].float()
        nxt = mask(cond, u + scale * (c - u)).argmax(-1, keepdim=True)
        cond, null = torch.cat([cond, nxt], 1), torch.cat([null, nxt], 1)
    assert torch.equal(out.codes, cond[:, 1:])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"guidance_scale": -1.0}, "guidance_scale = -1.0 is out of range"),
        ({"temperature": 0.0}, "temperature = 0.0 is out of range"),
        ({"top_k": 0}, "top_k = 0 is out of range"),
        (
            {"guidance_scale": float("nan")},
            r"guidance_scale = nan is out of range: it must be a finite number in \[0, inf\)",
        ),
        ({"guidance_scale": float("inf")}, r"guidance_scale = inf is out of range"),
        (
            {"temperature": float("inf")},
            r"temperature = inf is out of range: it must be a finite number in \(0, inf\)",
        ),
        ({"temperature": float("nan")}, r"temperature = nan is out of range"),
        ({"top_p": float("nan")}, r"top_p = nan is out of range: it must be a finite number in \(0, 1\]"),
        ({"num_images_per_prompt": 0}, "num_images_per_prompt = 0 is out of range"),
        ({"num_images_per_prompt": 2, "num_images_per_class": 3}, "disagree"),
        ({"compile": "yes"}, "compile = 'yes' must be True or False"),
        ({"top_p": 1.5}, "top_p = 1.5 is out of range"),
        ({"guidance_schedule": "cosine"}, "guidance_schedule = 'cosine' is not supported"),
        ({"num_images_per_class": 0}, "num_images_per_class = 0 is out of range"),
        ({"output_type": "jpeg"}, "output_type = 'jpeg' is not supported"),
        ({"callback_on_step_end_tensor_inputs": ["latents"]}, r"\['latents'\] are not available"),
    ],
)
def test_bad_arguments(pipe, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pipe(class_labels=[0], **kwargs)


def test_callback_on_step_end_sees_and_can_replace_the_newest_code(pipe):
    seen = []

    def force_zero_at_position_2(pipeline, step, position, callback_kwargs):
        seen.append((step, tuple(callback_kwargs["codes"].shape), tuple(callback_kwargs["logits"].shape)))
        if position == 2:
            codes = callback_kwargs["codes"].clone()
            codes[:, -1] = 0
            return {"codes": codes}
        return {}

    out = pipe(
        class_labels=[0, 1],
        callback_on_step_end=force_zero_at_position_2,
        callback_on_step_end_tensor_inputs=["codes", "logits"],
        generator=torch.manual_seed(0),
        output_type="latent",
    )
    assert seen == [(t, (2, t + 1), (2, pipe.transformer.config.vocab_size)) for t in range(5)]
    assert out.codes[:, 2].tolist() == [0, 0]

    def rewrite_history(pipeline, step, position, callback_kwargs):
        return {"codes": torch.zeros_like(callback_kwargs["codes"])} if position == 3 else {}

    with pytest.raises(ValueError, match="only change the newest column"):
        pipe(class_labels=[0, 1], callback_on_step_end=rewrite_history, generator=torch.manual_seed(0))


def test_documented_defaults_equal_signature_defaults():
    doc = VCQPipeline.__call__.__doc__
    documented = dict(re.findall(r"^\s+(\w+) \(`[^\n]*?defaults to `?([^`\n)]+?)`?\):", doc, flags=re.M))
    signature = inspect.signature(VCQPipeline.__call__)
    with_defaults = {n: p.default for n, p in signature.parameters.items() if p.default is not inspect.Parameter.empty}
    assert set(documented) == set(with_defaults), "every parameter with a default documents it"
    for name, default in with_defaults.items():
        text = documented[name].strip('"')
        assert text == str(default), f"{name}: docstring says {documented[name]!r}, signature says {default!r}"


# ------------------------------------------------------------------------------------------------ dtype & device


def test_bfloat16_pipeline_runs(tmp_path):
    pipeline = VCQPipeline(**get_dummy_components()).to(torch.bfloat16)
    pipeline.set_progress_bar_config(disable=True)
    assert pipeline.transformer.dtype == torch.bfloat16 and pipeline.vq_model.dtype == torch.bfloat16
    out = pipeline(class_labels=[0, 1], output_type="np", generator=torch.manual_seed(0))
    assert out.images.dtype == np.float32 and out.images.shape == (2, 12, 12, 3)
    assert bool((out.codes < torch.tensor(pipeline.transformer.config.codebook_sizes)).all())


# ------------------------------------------------------------------------------------------------ files & Hub


def test_save_load_round_trip(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "pipe")
    index = json.loads((tmp_path / "pipe" / "model_index.json").read_text())
    # diffusers' custom-pipeline names, the code in the folder (see tests/test_remote_code.py)
    assert index["_class_name"] == ["pipeline_vcq", "VCQPipeline"]
    assert index["vq_model"] == ["modeling_vcq_vq", "VCQVQModel"]
    assert index["transformer"] == ["modeling_vcq", "VCQForCausalLM"]
    assert index["id2label"] == {str(k): v for k, v in ID2LABEL.items()}
    assert list((tmp_path / "pipe" / "transformer").glob("*.safetensors"))
    assert not list((tmp_path / "pipe").rglob("*.bin"))
    assert (tmp_path / "pipe" / "README.md").is_file()

    loaded = VCQPipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.id2label == ID2LABEL and loaded.get_label_ids("sea anemone") == [2]
    a = pipe(class_labels=[0, 2], generator=torch.manual_seed(5), output_type="pt")
    b = loaded(class_labels=[0, 2], generator=torch.manual_seed(5), output_type="pt")
    assert torch.equal(a.codes, b.codes)
    torch.testing.assert_close(a.images, b.images)


def test_from_pretrained_dtype(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = VCQPipeline.from_pretrained(tmp_path / "pipe", dtype=torch.bfloat16)
    assert loaded.transformer.dtype == torch.bfloat16 and loaded.vq_model.dtype == torch.bfloat16


HUB_LOAD_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from vcq_hf.pipeline_vcq import VCQPipeline
    for repo_id in sys.argv[1:]:
        try:
            pipe = VCQPipeline.from_pretrained(repo_id)
        except Exception as err:
            print("ERROR", repo_id, type(err).__name__, str(err).replace("\\n", " "))
            continue
        pipe.set_progress_bar_config(disable=True)
        out = pipe(class_labels=["sea anemone", 0], generator=torch.manual_seed(5), output_type="latent")
        print("CODES", repo_id, out.codes.tolist())
    """
)


def _hub_cache(home, saved, repo_id: str, with_tree_listing: bool) -> None:
    """Lay out `saved` as huggingface_hub leaves a downloaded repo: blobs, snapshot symlinks, refs, tree listing."""
    repo = home / "hub" / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    files = {}
    for path in sorted(p for p in saved.rglob("*") if p.is_file()):
        relative = path.relative_to(saved).as_posix()
        blob_id = hashlib.sha1(path.read_bytes()).hexdigest()
        (repo / "blobs").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, repo / "blobs" / blob_id)
        link = repo / "snapshots" / commit / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(repo / "blobs" / blob_id, link.parent), link)
        files[relative] = {"size": path.stat().st_size, "blob_id": blob_id}
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    if with_tree_listing:  # written by snapshot_download since huggingface_hub 1.x
        (repo / "trees").mkdir()
        (repo / "trees" / f"{commit}.json").write_text(json.dumps({"format_version": 1, "files": files}))


def test_from_pretrained_hub_id_from_offline_cache(pipe, tmp_path):
    saved = tmp_path / "saved"
    pipe.save_pretrained(saved)
    home = tmp_path / "hf_home"
    _hub_cache(home, saved, "org/vcq-tiny", with_tree_listing=False)
    _hub_cache(home, saved, "org/vcq-tiny-listed", with_tree_listing=True)
    script = tmp_path / "load.py"
    script.write_text(HUB_LOAD_SCRIPT)
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("HF_HUB_CACHE", None)
    expected = pipe(class_labels=[2, 0], generator=torch.manual_seed(5), output_type="latent").codes.tolist()
    result = subprocess.run(
        [sys.executable, str(script), "org/vcq-tiny", "org/vcq-tiny-listed", "org/not-cached"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert f"CODES org/vcq-tiny {expected}" in lines, result.stdout + result.stderr[-3000:]
    assert f"CODES org/vcq-tiny-listed {expected}" in lines, result.stdout + result.stderr[-3000:]
    errors = [line for line in lines if line.startswith("ERROR org/not-cached")]
    assert errors and "LocalEntryNotFoundError" in errors[0] and "VCQPipeline 'org/not-cached'" in errors[0]


# ------------------------------------------------------------------------------------------------ model card


def test_model_card_created_offline(pipe, tmp_path):
    card = pipe.create_model_card()
    assert card.data.library_name == "diffusers"
    assert card.data.license == "apache-2.0"
    assert {"vcq", "class-conditional-image-generation"} <= set(card.data.tags)
    assert "| codebook sizes K_t | 3, 6, 11, 20, 37 |" in card.text and "sea anemone" in card.text
    assert "VCQPipeline.from_pretrained" in card.text

    pipe.save_pretrained(tmp_path / "pipe")
    assert "VCQPipeline.from_pretrained" in (tmp_path / "pipe" / "README.md").read_text()


def test_model_card_existing_readme_is_kept(pipe, tmp_path):
    folder = tmp_path / "pipe"
    folder.mkdir()
    (folder / "README.md").write_text("---\nlicense: mit\ntags:\n- mine\n---\n\nMy own card.\n")
    pipe.save_pretrained(folder)
    assert "My own card." in (folder / "README.md").read_text()  # save_pretrained never overwrites a card
    card = pipe.create_model_card(folder)
    assert "My own card." in card.text and card.data.license == "mit"
    assert card.data.tags[0] == "mine" and "vcq" in card.data.tags


def test_push_to_hub_uploads_folder_with_card(pipe, tmp_path, monkeypatch):
    import vcq_hf.hub.pipeline as module

    uploaded = {}

    class FakeRepoUrl:
        repo_id = "me/vcq-tiny"

    def fake_upload_folder(self, working_dir, repo_id, token=None, commit_message=None, create_pr=False):
        uploaded["repo_id"] = repo_id
        uploaded["files"] = sorted(
            os.path.relpath(os.path.join(r, f), working_dir) for r, _, fs in os.walk(working_dir) for f in fs
        )
        uploaded["readme"] = open(os.path.join(working_dir, "README.md")).read()
        return "https://huggingface.co/me/vcq-tiny/commit/0"

    monkeypatch.setattr(module, "create_repo", lambda *args, **kwargs: FakeRepoUrl())
    monkeypatch.setattr(VCQPipeline, "_upload_folder", fake_upload_folder)
    pipe.push_to_hub("me/vcq-tiny")  # offline: the repo's card cannot be fetched, so a new one is created
    assert uploaded["repo_id"] == "me/vcq-tiny"
    assert "model_index.json" in uploaded["files"] and "README.md" in uploaded["files"]
    assert "VCQPipeline.from_pretrained" in uploaded["readme"] and "vcq" in uploaded["readme"]


def test_call_docstring_example_runs():
    import doctest

    finder = doctest.DocTestFinder()
    tests = finder.find(VCQPipeline.__call__, "VCQPipeline.__call__", globs={})
    assert tests and tests[0].examples, "the __call__ docstring has an example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_model_cpu_offload_hooks_give_the_same_codes(pipe):
    # No accelerator in CI: accelerate's hooks are attached with device="cpu", which exercises the offload sequence,
    # `_execution_device` and `maybe_free_model_hooks` (on a GPU the same call moves each model in turn).
    offloaded = VCQPipeline(**get_dummy_components())
    offloaded.set_progress_bar_config(disable=True)
    offloaded.enable_model_cpu_offload(device="cpu")
    for _ in range(2):  # the hooks are re-armed by maybe_free_model_hooks at the end of each call
        out = offloaded(class_labels=[0, 2], guidance_scale=3.0, do_sample=False, output_type="pt")
        reference = pipe(class_labels=[0, 2], guidance_scale=3.0, do_sample=False, output_type="pt")
        assert torch.equal(out.codes, reference.codes)
        torch.testing.assert_close(out.images, reference.images)


# ------------------------------------------------------------------------------------------------ sampling surface


def test_sampling_defaults_come_from_the_checkpoint_then_the_documented_default():
    from vcq_hf.sampling import DEFAULT_GUIDANCE_SCALE

    pipeline = VCQPipeline(**get_dummy_components())
    assert pipeline.sampling_defaults["guidance_scale"] == DEFAULT_GUIDANCE_SCALE == 2.0
    assert pipeline.resolve_sampling_settings(top_k=3)["top_k"] == 3
    pipeline.transformer.generation_config.guidance_scale = 3.5
    pipeline.transformer.generation_config.guidance_schedule = "linear"
    settings = pipeline.resolve_sampling_settings()
    assert settings["guidance_scale"] == 3.5 and settings["guidance_schedule"] == "linear"
    assert pipeline.resolve_sampling_settings(guidance_scale=1.0)["guidance_scale"] == 1.0
    # the call uses the checkpoint's setting when none is given
    default = pipeline(class_labels=[0, 1], do_sample=False, output_type="latent")
    explicit = pipeline(
        class_labels=[0, 1], guidance_scale=3.5, guidance_schedule="linear", do_sample=False, output_type="latent"
    )
    assert torch.equal(default.codes, explicit.codes) and pipeline.guidance_scale == 3.5
    pipeline.transformer.generation_config.guidance_scale = float("nan")
    with pytest.raises(ValueError, match="guidance_scale = nan"):
        pipeline.resolve_sampling_settings()


def test_guidance_default_is_consistent_everywhere():
    import argparse

    from vcq_hf import cli_generate

    parser = argparse.ArgumentParser()
    cli_generate.add_cli_arguments(parser)
    args = parser.parse_args([])
    assert args.guidance_scale is None and args.guidance_schedule is None  # the pipeline decides
    signature = inspect.signature(VCQPipeline.__call__)
    assert signature.parameters["guidance_scale"].default is None


def test_class_labels_from_a_command_line(pipe):
    assert pipe.resolve_class_labels(["2", "tench", " 1 "]) == [2, 0, 1]
    with pytest.raises(ValueError, match=r"class label 7 \(class_labels\[0\]\) is out of range"):
        pipe.resolve_class_labels(["7"])


def test_components_rebuild_keeps_id2label(pipe):
    rebuilt = VCQPipeline(**pipe.components)
    assert rebuilt.id2label == pipe.id2label == ID2LABEL
    assert rebuilt.get_label_ids("sea anemone") == [2]
    plain = VCQPipeline(**{**get_dummy_components(), "id2label": None})
    assert VCQPipeline(**plain.components).id2label == {}


def test_num_images_per_prompt_is_num_images_per_class(pipe):
    gens = [torch.Generator().manual_seed(s) for s in range(4)]
    prompt = pipe(class_labels=[0, 2], num_images_per_prompt=2, generator=gens, output_type="latent")
    gens = [torch.Generator().manual_seed(s) for s in range(4)]
    per_class = pipe(class_labels=[0, 2], num_images_per_class=2, generator=gens, output_type="latent")
    assert prompt.codes.shape == (4, 5) and torch.equal(prompt.codes, per_class.codes)


def test_callback_reads_properties_and_interrupts(pipe):
    seen = []

    def stop_after_position_1(pipeline, step, position, callback_kwargs):
        seen.append((pipeline.num_timesteps, pipeline.guidance_scale, pipeline.do_classifier_free_guidance))
        if position == 1:
            pipeline._interrupt = True
        return {}

    out = pipe(
        class_labels=[0, 1], guidance_scale=3.0, callback_on_step_end=stop_after_position_1, output_type="latent"
    )
    assert seen == [(5, 3.0, True)] * 2
    assert out.codes.shape == (2, 2) and out.images.shape == (2, 2)
    stopped = pipe(class_labels=[0], callback_on_step_end=stop_after_position_1, output_type="pil")
    assert stopped.images is None and stopped.codes.shape == (1, 2)
    assert pipe(class_labels=[0], output_type="latent").codes.shape == (1, 5)  # the flag is reset per call


# ------------------------------------------------------------------------------------------------ fast decode loop


def full_head_then_mask_probs(pipe, labels, guidance_scale, processors, codes):
    """Per-position sampling distributions of the reference: full-vocabulary head, guidance, VCQMask, then warpers,
    without a KV cache, along the given `codes`."""
    from transformers import LogitsProcessorList

    config = pipe.transformer.config
    processors = LogitsProcessorList([VCQMask(codebook_sizes=config.codebook_sizes, prompt_length=1), *processors])
    cond = torch.tensor(config.class_token_ids(labels))[:, None]
    null = torch.full_like(cond, config.null_class_token_id)
    probs = []
    for position in range(config.num_image_tokens):
        c = pipe.transformer(input_ids=cond).logits[:, -1].float()
        u = pipe.transformer(input_ids=null).logits[:, -1].float()
        scores = processors(cond, u + guidance_scale * (c - u))
        probs.append(torch.softmax(scores, dim=-1))
        nxt = codes[:, position : position + 1]
        cond, null = torch.cat([cond, nxt], 1), torch.cat([null, nxt], 1)
    return probs


@pytest.mark.parametrize(
    "guidance_scale, warpers",
    [(1.0, {}), (3.0, {}), (3.0, {"temperature": 0.7, "top_k": 4}), (2.0, {"top_p": 0.8, "temperature": 1.3})],
)
def test_schedule_aware_head_gives_the_full_head_plus_mask_distribution(pipe, guidance_scale, warpers):
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    labels = [0, 2, 1]
    seen = []

    def record(pipeline, step, position, callback_kwargs):
        seen.append(torch.softmax(callback_kwargs["logits"], dim=-1))
        return {}

    out = pipe(
        class_labels=labels,
        guidance_scale=guidance_scale,
        generator=torch.manual_seed(5),
        output_type="latent",
        callback_on_step_end=record,
        callback_on_step_end_tensor_inputs=["logits"],
        **warpers,
    )
    processors = []
    if "temperature" in warpers:
        processors.append(TemperatureLogitsWarper(warpers["temperature"]))
    if "top_k" in warpers:
        processors.append(TopKLogitsWarper(warpers["top_k"]))
    if "top_p" in warpers:
        processors.append(TopPLogitsWarper(warpers["top_p"]))
    reference = full_head_then_mask_probs(pipe, labels, guidance_scale, processors, out.codes)
    limits = pipe.transformer.config.codebook_sizes
    for position, (got, want) in enumerate(zip(seen, reference)):
        assert got.shape == want.shape
        assert torch.equal(got[:, limits[position] :], torch.zeros_like(got[:, limits[position] :]))
        assert torch.equal(got == 0, want == 0)  # the same support (mask and warpers)
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_decode_step_computes_only_the_allowed_logits(pipe):
    widths = []
    handle = pipe.transformer.register_forward_hook(
        lambda module, args, output: widths.append(output.logits.shape[-1])
    )
    try:
        pipe(class_labels=[0, 1], guidance_scale=2.0, output_type="latent")
    finally:
        handle.remove()
    assert widths == list(pipe.transformer.config.codebook_sizes)  # K_t columns at position t, not vocab_size


def test_kv_cache_is_allocated_once_and_never_reallocated(pipe):
    from vcq_hf.generation import VCQStaticCache

    pointers, lengths = [], []

    def record(module, args, kwargs):
        cache = kwargs["cache"]
        assert isinstance(cache, VCQStaticCache)
        layer = cache.layers[0]
        if layer.is_initialized:
            pointers.append(layer.keys.data_ptr())
            lengths.append(layer.keys.shape)

    handle = pipe.transformer.register_forward_pre_hook(record, with_kwargs=True)
    try:
        pipe(class_labels=[0, 1, 2], guidance_scale=3.0, output_type="latent")
    finally:
        handle.remove()
    assert len(pointers) == 4 and len(set(pointers)) == 1  # the buffer of the prefill, reused by every step
    assert set(lengths) == {torch.Size([6, 1, 5, 12])}  # 2B rows x kv heads x T fed tokens x head dim


def test_kv_cache_positions_are_never_read_before_they_are_written(pipe, monkeypatch):
    # The buffers are allocated uninitialised; poison them with NaN: any read of an unwritten position (a masked
    # full-buffer attention, an off-by-one length) would turn the logits into NaN and change the codes.
    from vcq_hf.generation import PrefixStaticLayer

    kwargs = dict(class_labels=[0, 1, 2], guidance_scale=3.0, generator=torch.manual_seed(5), output_type="latent")
    want = pipe(**kwargs).codes
    allocate = PrefixStaticLayer.lazy_initialization

    def poisoned(layer, key_states, value_states):
        allocate(layer, key_states, value_states)
        layer.keys.fill_(float("nan"))
        layer.values.fill_(float("nan"))

    monkeypatch.setattr(PrefixStaticLayer, "lazy_initialization", poisoned)
    kwargs["generator"] = torch.manual_seed(5)
    logits = []
    got = pipe(
        **kwargs,
        callback_on_step_end=lambda *a: logits.append(a[3]["logits"]) or {},
        callback_on_step_end_tensor_inputs=["logits"],
    ).codes
    assert not any(torch.isnan(step).any() for step in logits)
    assert torch.equal(got, want)


def test_compiled_decode_step_gives_the_same_codes(pipe):
    torch._dynamo.reset()
    eager = pipe(class_labels=[0, 1, 2], guidance_scale=3.0, do_sample=False, output_type="latent")
    with torch._dynamo.config.patch(error_on_recompile=False):
        compiled = pipe(
            class_labels=[0, 1, 2], guidance_scale=3.0, do_sample=False, output_type="latent", compile=True
        )
    assert torch.equal(eager.codes, compiled.codes)
