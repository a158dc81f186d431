"""The committed model cards (model_cards/*.md): Hub metadata, numbers that match the code, and freshness."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from vcq_hf import VCQConfig, VCQForCausalLM, VCQPipeline, VCQVQConfig, VCQVQModel
from vcq_hf.hub import model_card as mc
from vcq_hf.schedules import DEFAULT_SCHEDULE, cliff_position, codebook_sizes


REPO = Path(__file__).resolve().parents[1]
CARDS = REPO / "model_cards"
DEMO = REPO / "src" / "vcq_hf" / "demo"


def split_card(text: str) -> tuple[dict, str]:
    match = re.match(r"^---\n(.*?)\n---\n", text, flags=re.S)
    assert match, "the card has no YAML front matter"
    return yaml.safe_load(match.group(1)), text[match.end() :]


def table_value(body: str, key: str) -> str:
    match = re.search(rf"^\| {re.escape(key)} \| (.*?) \|$", body, flags=re.M)
    assert match, f"no row {key!r}"
    return match.group(1)


def llama_parameter_count(config: VCQConfig) -> int:
    """Closed-form count of a Llama decoder with untied embeddings (independent of the meta-device count)."""
    d, i, layers, vocab = config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.vocab_size
    kv = config.num_key_value_heads * (d // config.num_attention_heads)
    per_layer = d * d + 2 * d * kv + d * d + 3 * d * i + 2 * d  # q, k, v, o, SwiGLU, two RMSNorms
    return vocab * d + layers * per_layer + d + vocab * d


@pytest.fixture(scope="module")
def preset_cards() -> dict[str, str]:
    return {preset: str(mc.build_preset_card(preset)) for preset in mc.AR_PRESETS}


@pytest.mark.parametrize("preset", mc.AR_PRESETS)
def test_preset_card_metadata_and_numbers_match_the_code(preset_cards, preset):
    meta, body = split_card(preset_cards[preset])
    assert meta["library_name"] == "diffusers"
    assert meta["pipeline_tag"] == "text-to-image" and "class-conditional-image-generation" in meta["tags"]
    assert "model-index" not in meta  # nothing on a preset card was measured by this project
    assert meta["license"] == "apache-2.0"
    assert meta["datasets"] == ["ILSVRC/imagenet-1k"]
    assert meta["metrics"] == ["fid", "accuracy"]
    assert {"vcq_hf", f"schedule-{DEFAULT_SCHEDULE}", "imagenet", f"preset-{preset}"} <= set(meta["tags"])

    config = VCQConfig.from_preset(preset)
    vq_config = VCQVQConfig.from_preset("imagenet-256")
    sizes = list(config.codebook_sizes)
    assert sizes == list(codebook_sizes(256, 2, 16384, DEFAULT_SCHEDULE)) == list(vq_config.codebook_sizes)
    assert table_value(body, "tokens per image (T)") == str(config.num_image_tokens) == "256"
    assert table_value(body, "K_max (codebook size)") == str(config.codebook_size) == "16384"
    assert table_value(body, "K_min (first position)") == str(sizes[0])
    assert table_value(body, "schedule") == vq_config.schedule == DEFAULT_SCHEDULE
    shown = table_value(body, "codebook sizes K_t")
    assert shown == f"{', '.join(map(str, sizes[:6]))}, ..., {', '.join(map(str, sizes[-3:]))}"
    cliff = cliff_position(1_281_167, sizes)
    assert table_value(body, "entropy-cliff position (1-based t with sum log2 K_i >= log2 N)").startswith(f"{cliff} ")
    assert f"from position {cliff_position(1_281_167, [16384] * 256)} (uniform codebook) to {cliff}" in body
    assert table_value(body, "prior hidden size") == str(config.hidden_size)
    assert table_value(body, "prior layers") == str(config.num_hidden_layers)
    assert table_value(body, "prior MLP (SwiGLU) width") == str(config.intermediate_size)

    count = int(table_value(body, f"parameters: transformer (`VCQForCausalLM`, `{preset}`)").replace(",", ""))
    assert count == llama_parameter_count(config)
    with torch.device("meta"):
        vq_params = sum(p.numel() for p in VCQVQModel(vq_config).parameters())
    assert table_value(body, "parameters: vq_model (`VCQVQModel`, `imagenet-256`)") == f"{vq_params:,}"
    assert f"--model_config {preset}" in body and "--flip_augmentation" in body


def test_preset_parameter_counts_agree_with_the_config_docstring():
    # The VCQConfig docstring table (111.66M, ...) and the cards are both measured from the same code.
    expected = {"vcq-b": 111.66e6, "vcq-l": 343.94e6, "vcq-xl": 775.98e6, "vcq-684m": 684.88e6}
    for preset, millions in expected.items():
        assert round(llama_parameter_count(VCQConfig.from_preset(preset)) / 1e4) == round(millions / 1e4)


def test_paper_figures_are_labelled_as_reported_not_trained(preset_cards):
    for preset, text in preset_cards.items():
        _, body = split_card(text)
        results = body.split("## Results", 1)[1].split("\n## ", 1)[0]
        assert "### Reported by the paper, not trained by this project" in results
        for figure in ("27.98 -> 14.80", "1.71", "43.8% vs 27.1%"):
            assert figure in results, (preset, figure)
        assert "this project has not trained this model" in body
        assert ("not for this preset" in results or "not this preset" in results) == (preset != "vcq-684m")


def test_committed_preset_cards_equal_fresh_renders(preset_cards):
    for preset, text in preset_cards.items():
        path = CARDS / f"{preset}.md"
        assert path.is_file(), f"{path} is missing: run python -m vcq_hf.hub.model_card"
        assert path.read_text() == text, f"{path} is stale: run python -m vcq_hf.hub.model_card"


def test_compute_estimates_follow_the_stated_formula():
    rows = {row["stage"].split(" (")[0]: row for row in mc.imagenet_compute_estimates()}
    config = VCQConfig.from_preset("vcq-b")
    weights = llama_parameter_count(config) - config.vocab_size * config.hidden_size
    tokens = 150 * 2 * 1_281_167 * 257
    flops = (6 * weights + 12 * config.num_hidden_layers * 257 * config.hidden_size) * tokens
    row = rows["AR prior `vcq-b`"]
    assert row["flops"] == pytest.approx(flops, rel=1e-12)
    assert row["gpu_hours"]["H100-SXM"] == pytest.approx(flops / (989e12 * 0.4) / 3600)
    # The bigger presets cost more, and the table in docs/imagenet.md is the generated one.
    assert (
        rows["AR prior `vcq-xl`"]["flops"] > rows["AR prior `vcq-684m`"]["flops"] > rows["AR prior `vcq-l`"]["flops"]
    )
    doc = (REPO / "docs" / "imagenet.md").read_text()
    assert mc.format_compute_estimates() in doc


def _pixel_head_flops(counts: dict[str, dict]) -> int:
    """FlopCounterMode's counts of the decoder's pixel head: proj_out, the conv blocks and conv_out."""
    head = ("VCQVQDecoder.proj_out", "VCQVQDecoder.conv_out")
    return sum(
        sum(ops.values())
        for name, ops in counts.items()
        if name in head or re.fullmatch(r"VCQVQDecoder\.conv_blocks\.\d+", name)
    )


@pytest.mark.parametrize(
    "preset, overrides",
    [("tiny", {}), ("tiny", {"decoder_conv_layers": 0}), ("tiny", {"decoder_type": "linear"}), ("imagenet-256", {})],
)
def test_pixel_head_flops_equal_torch_flop_counter(preset, overrides):
    from torch.utils.flop_counter import FlopCounterMode

    config = VCQVQConfig.from_preset(preset, **overrides)
    with torch.device("meta" if preset == "imagenet-256" else "cpu"):  # meta: shapes only, no compute
        model = VCQVQModel(config)
        quantized = torch.randn(1, config.num_image_tokens, config.codebook_dim, requires_grad=True)
    with FlopCounterMode(display=False) as forward:
        model.decoder(quantized)
    assert _pixel_head_flops(forward.get_flop_counts()) == mc.pixel_head_forward_flops(config)
    with FlopCounterMode(display=False) as training:
        model.decoder(quantized).sum().backward()
    assert _pixel_head_flops(training.get_flop_counts()) == 3 * mc.pixel_head_forward_flops(config)  # backward = 2x
    head = [model.decoder.proj_out, model.decoder.conv_out, model.decoder.conv_blocks]
    assert sum(p.numel() for m in head if m is not None for p in m.parameters()) == mc.pixel_head_num_parameters(
        config
    )


def test_imagenet_tokenizer_estimate_matches_torch_flop_counter():
    # The whole tokenizer, encoder and decoder, against FlopCounterMode on the meta device: within 2%. Counting the
    # conv pixel head as "2 x parameters x tokens" (before issue 12) left the decoder 3.7% short, the encoder 4% over.
    from torch.utils.flop_counter import FlopCounterMode

    config = VCQVQConfig.from_preset("imagenet-256")
    with torch.device("meta"):
        model = VCQVQModel(config)
        pixel_values = torch.randn(1, config.num_channels, config.image_size, config.image_size)
        quantized = torch.randn(1, config.num_image_tokens, config.codebook_dim)
    estimate = mc._tokenizer_forward_flops_per_image(model.num_parameters(), config)
    for part, inputs in (("encoder", pixel_values), ("decoder", quantized)):
        with FlopCounterMode(display=False) as counter:
            getattr(model, part)(inputs)
        assert estimate[part] == pytest.approx(counter.get_total_flops(), rel=0.02), part


def make_fake_demo(folder: Path) -> None:
    torch.manual_seed(0)
    vq_config = VCQVQConfig.from_preset("tiny")
    transformer = VCQForCausalLM(VCQConfig.from_vq_config(vq_config, preset="tiny"))
    pipe = VCQPipeline(vq_model=VCQVQModel(vq_config), transformer=transformer, id2label={0: "a", 1: "b", 2: "c"})
    pipe.save_pretrained(folder)
    (folder / "README.md").write_text(
        "# card\n\n```python\nx\n```\n\n```bash\naccelerate launch examples/train_ar.py --y\n```\n"
    )
    usage = {"num_images": 40, "usage_fraction_per_position": [1.0, 0.5, 0.25, 0.125, 0.0625]}
    # The layout of benchmarks/export_demo.py: both summaries at the top of the demo folder.
    (folder / "training_summary_tokenizer.json").write_text(
        json.dumps(
            {"script": "train_tokenizer.py", "global_step": 321, "wall_time_s": 654.5, "num_train_images": 40,
             "final_logs": {"loss": 0.0123}, "code_usage": usage, "command": "accelerate launch examples/train_tokenizer.py --x"}
        )
    )  # fmt: skip
    (folder / "training_summary_ar.json").write_text(
        json.dumps({"script": "train_ar.py", "global_step": 987, "wall_time_s": 111.5, "final_logs": {"loss": 4.56}})
    )


def test_demo_card_reads_its_figures_from_the_files(tmp_path):
    make_fake_demo(tmp_path / "demo")
    results = {
        "entropy": {"constant": {"predicted_cliff": 2, "observed_cliff": 3}, "log": {"predicted_cliff": 9, "observed_cliff": 8}},
        "generation": {arm: {"no_guidance": {"FID-FMNIST-CNN": fid}, "best_guidance": {"FID-FMNIST-CNN": fid / 2},
                             "best_guidance_scale": 2.0} for arm, fid in (("constant", 40.25), ("log", 20.75))},
    }  # fmt: skip
    (tmp_path / "results.json").write_text(json.dumps(results))
    text = str(mc.build_demo_card(tmp_path / "demo", results_path=tmp_path / "results.json"))
    meta, body = split_card(text)
    assert meta["library_name"] == "diffusers" and meta["datasets"] == ["zalando-datasets/fashion_mnist"]
    assert table_value(body, "tokens per image (T)") == "5" and table_value(body, "K_max (codebook size)") == "37"
    assert table_value(body, "tokenizer: optimizer steps") == "321"
    assert table_value(body, "prior: final loss") == "4.56"
    assert table_value(body, "prior: wall time (s)") == "111.5"
    recipe = body.split("## Training recipe", 1)[1].split("\n## ", 1)[0]
    assert "accelerate launch examples/train_tokenizer.py --x" in recipe
    assert "accelerate launch examples/train_ar.py --y" in recipe
    assert "1.00 0.50 0.25 0.12 0.06" in body
    assert "| gFID (FMNIST-CNN), no guidance | 40.25 | 20.75 |" in body
    assert "| observed entropy cliff (position) | 3 | 8 |" in body
    # examples/evaluate_pipeline.py metrics copied next to the checkpoint become result rows (std columns left out)
    evaluation = {"metrics": {"FID-FMNIST-CNN": 12.3456789, "FID-FMNIST-CNN-std": 1.0}, "num_samples": 50,
                  "guidance_scale": 2.0, "num_reference": 100, "reference_split": "test"}  # fmt: skip
    (tmp_path / "demo" / "evaluation_cfg2.json").write_text(json.dumps(evaluation))
    meta, body = split_card(str(mc.build_demo_card(tmp_path / "demo", results_path=tmp_path / "results.json")))
    assert table_value(body, "samples (50 samples, guidance 2, vs 100 test images): FID-FMNIST-CNN") == "12.3457"
    assert "FID-FMNIST-CNN-std" not in body
    # ... and the card's model-index eval results (measured on this checkpoint)
    (result,) = meta["model-index"][0]["results"]
    assert result["dataset"]["type"] == "zalando-datasets/fashion_mnist" and result["dataset"]["split"] == "test"
    assert result["metrics"] == [
        {"type": "fid", "value": 12.3457, "name": "FID-FMNIST-CNN (50 samples, guidance 2, vs 100 test images)"}
    ]
    (tmp_path / "demo" / "evaluation_cfg2.json").unlink()
    # Without a stored tokenizer command the card says where the tokenizer's run is summarised instead.
    summary_path = tmp_path / "demo" / "training_summary_tokenizer.json"
    summary = json.loads(summary_path.read_text())
    del summary["command"]
    summary_path.write_text(json.dumps(summary))
    _, body = split_card(str(mc.build_demo_card(tmp_path / "demo", results_path=tmp_path / "results.json")))
    assert "not stored with the checkpoint" in body and "`training_summary_tokenizer.json`" in body
    # Without the study file the card has no study section and no metric.
    meta, body = split_card(str(mc.build_demo_card(tmp_path / "demo", results_path=tmp_path / "absent.json")))
    assert "Small-scale study" not in body and "metrics" not in meta
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        mc.build_demo_card(tmp_path / "nothing")


@pytest.mark.skipif(
    not (DEMO / "model_index.json").is_file(),
    reason="the bundled demo checkpoint (src/vcq_hf/demo/model_index.json) is not there yet",
)
def test_committed_demo_card_matches_the_bundled_checkpoint():
    text = str(mc.build_demo_card(DEMO, results_path=REPO / mc.REPRODUCTION_RESULTS, card_dir=CARDS))
    meta, body = split_card(text)
    assert meta["library_name"] == "diffusers" and meta["pipeline_tag"] == "text-to-image"
    assert {metric["type"] for metric in meta["model-index"][0]["results"][0]["metrics"]} >= {"fid", "accuracy"}
    pipe = VCQPipeline.from_pretrained(DEMO)
    sizes = list(pipe.transformer.config.codebook_sizes)
    assert sizes == list(pipe.vq_model.config.codebook_sizes)
    assert table_value(body, "tokens per image (T)") == str(len(sizes))
    assert table_value(body, "K_max (codebook size)") == str(sizes[-1])
    for name, module in (
        ("transformer (`VCQForCausalLM`)", pipe.transformer),
        ("vq_model (`VCQVQModel`)", pipe.vq_model),
    ):
        assert table_value(body, f"parameters: {name}") == f"{sum(p.numel() for p in module.parameters()):,}"
    path = CARDS / f"{mc.DEMO_CARD_NAME}.md"
    assert path.is_file() and path.read_text() == text, f"{path} is stale: run python -m vcq_hf.hub.model_card"


@pytest.mark.parametrize("kind", mc.MODEL_CARD_KINDS)
def test_every_card_has_install_line_citation_and_consistent_metadata(kind, preset_cards):
    vq_config = VCQVQConfig.from_preset("tiny")
    ar_config = VCQConfig.from_vq_config(vq_config, preset="tiny")
    texts = [str(mc.build_model_card(kind, vq_config=vq_config, ar_config=ar_config))]
    if kind == "pipeline":
        texts += list(preset_cards.values())
        texts += [
            str(VCQPipeline(vq_model=VCQVQModel(vq_config), transformer=VCQForCausalLM(ar_config)).create_model_card())
        ]
    for text in texts:
        meta, body = split_card(text)
        assert meta["library_name"] == mc.LIBRARY_NAMES[kind] and meta["pipeline_tag"] == mc.PIPELINE_TAGS[kind]
        assert "## Install" in body and "pip install" in body.split("## Install", 1)[1].split("\n## ", 1)[0]
        assert "arXiv 2605.06207" in body and "@article{zheng2026taming" in body
        assert "trust_remote_code=True" in body  # the generic entry point without vcq_hf


def test_cli_check_and_unknown_preset(tmp_path, capsys):
    assert mc.main(["--output_dir", str(tmp_path), "--preset", "vcq-b"]) == 0
    assert (tmp_path / "vcq-b.md").read_text() == str(mc.build_preset_card("vcq-b"))
    assert mc.main(["--output_dir", str(tmp_path), "--preset", "vcq-b", "--check"]) == 0
    (tmp_path / "vcq-b.md").write_text("old")
    assert mc.main(["--output_dir", str(tmp_path), "--preset", "vcq-b", "--check"]) == 1
    assert "stale" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        mc.main(["--preset", "vcq-q"])


def test_license_and_citation_files():
    import configparser

    import yaml

    root = Path(__file__).resolve().parents[1]
    setup = configparser.ConfigParser()
    setup.read(root / "setup.cfg")
    assert setup["metadata"]["license"] == "Apache-2.0"
    assert "Apache License" in (root / "LICENSE").read_text() and "Version 2.0" in (root / "LICENSE").read_text()
    citation = yaml.safe_load((root / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["license"] == "Apache-2.0"
    assert citation["version"] == setup["metadata"]["version"]
    paper = citation["preferred-citation"]
    assert paper["url"] == "https://arxiv.org/abs/2605.06207"
    assert {"type": "other", "value": "arXiv:2605.06207", "description": "arXiv identifier"} in paper["identifiers"]
