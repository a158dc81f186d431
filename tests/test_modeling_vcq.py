"""VCQConfig validation and presets; VCQForCausalLM loss, class dropout, input checks, save/load and remote code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from huggingface_hub.errors import StrictDataclassError
from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

from vcq_hf import VCQConfig, VCQForCausalLM
from vcq_hf.configuration_vcq import llamagen_intermediate_size


def tiny_model(seed: int = 0, **overrides) -> VCQForCausalLM:
    torch.manual_seed(seed)
    return VCQForCausalLM(VCQConfig.from_preset("tiny", **overrides))


def random_codes(config: VCQConfig, batch_size: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    columns = [torch.randint(0, size, (batch_size, 1), generator=generator) for size in config.codebook_sizes]
    return torch.cat(columns, dim=1)  # (B, T), column t < K_t


# ---------------------------------------------------------------- config
class TestVCQConfig:
    def test_derived_fields(self):
        config = VCQConfig(codebook_size=32, num_image_tokens=4, num_classes=7, hidden_size=16, num_attention_heads=2)
        assert config.vocab_size == 32 + 7 + 1
        assert config.codebook_sizes == [32, 32, 32, 32]  # constant schedule by default
        assert config.max_position_embeddings == 5
        assert config.null_class_token_id == 39
        assert config.class_token_ids([0, 6]) == [32, 38]
        assert config.class_token_ids(torch.tensor([1, 2])) == [33, 34]
        assert config.class_token_ids(3) == [35]
        assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (None, None, None)
        assert config.model_type == "vcq" and config.mask_logits_in_loss is False

    def test_tuple_schedule_is_stored_as_list(self):
        config = VCQConfig(codebook_size=8, codebook_sizes=(2, 4, 8), num_image_tokens=3, num_classes=2)
        assert config.codebook_sizes == [2, 4, 8]

    @pytest.mark.parametrize(
        "kwargs, match",
        [
            ({"vocab_size": 100}, r"vocab_size = 100 does not match .* = 20"),
            ({"codebook_sizes": [2, 4, 16]}, r"codebook_sizes has 3 entries but num_image_tokens is 5"),
            ({"codebook_sizes": [2, 8, 4, 16, 16]}, r"monotone non-decreasing"),
            ({"codebook_sizes": [2, 4, 8, 8, 8]}, r"ends at 8 but codebook_size \(K_max\) is 16"),
            ({"codebook_sizes": [2, 4, 8, 16, 32]}, r"codebook_sizes ends at 32 but codebook_size \(K_max\) is 16"),
            ({"codebook_sizes": [0, 4, 8, 16, 16]}, r">= 1"),
            ({"max_position_embeddings": 5}, r"max_position_embeddings = 5 is too small.* >= 6"),
            ({"class_dropout_prob": 1.5}, r"class_dropout_prob = 1.5 is out of range"),
            ({"num_classes": 0}, r"num_classes = 0 is out of range"),
            ({"codebook_size": 0}, r"codebook_size = 0 is out of range"),
            ({"num_image_tokens": 0, "codebook_sizes": None}, r"num_image_tokens = 0 is out of range"),
            ({"class_dropout_prob": float("nan")}, r"class_dropout_prob = nan is out of range: .* in \[0, 1\]"),
            ({"rms_norm_eps": float("nan")}, r"rms_norm_eps = nan is out of range: .* in \(0, inf\)"),
            ({"initializer_range": float("inf")}, r"(?s)initializer_range.*got inf"),
            ({"attention_dropout": float("nan")}, r"attention_dropout = nan is out of range"),
        ],
    )
    def test_validation_errors_name_the_values(self, kwargs, match):
        with pytest.raises(StrictDataclassError, match=match):
            VCQConfig.from_preset("tiny", **kwargs)

    def test_matching_vocab_size_is_accepted(self):
        assert VCQConfig.from_preset("tiny", vocab_size=20).vocab_size == 20

    def test_class_token_ids_rejects_out_of_range_labels(self):
        config = VCQConfig.from_preset("tiny")
        for bad in (3, -1, [0, 5]):
            with pytest.raises(ValueError, match=r"outside the allowed range \[0, 3\)"):
                config.class_token_ids(bad)
        with pytest.raises(ValueError, match="not an integer"):
            config.class_token_ids([0.5])

    def test_field_types_are_checked_on_assignment(self):
        # `from __future__ import annotations` in the config module would silently turn these checks off.
        with pytest.raises(StrictDataclassError, match="expected int, got str"):
            VCQConfig().hidden_size = "x"
        with pytest.raises(StrictDataclassError, match="num_classes = 0 is out of range"):
            VCQConfig.from_preset("tiny").num_classes = 0

    def test_from_pretrained_overrides_are_validated(self, tmp_path):
        VCQConfig.from_preset("tiny").save_pretrained(tmp_path)
        config = VCQConfig.from_pretrained(tmp_path, num_classes=7)  # the vocabulary is derived again
        assert (config.num_classes, config.vocab_size, config.null_class_token_id) == (7, 24, 23)
        with pytest.raises(StrictDataclassError, match="class_dropout_prob = nan is out of range"):
            VCQConfig.from_pretrained(tmp_path, class_dropout_prob=float("nan"))
        with pytest.raises(StrictDataclassError, match="codebook_sizes has 5 entries but num_image_tokens is 4"):
            VCQConfig.from_pretrained(tmp_path, num_image_tokens=4)
        with pytest.raises(StrictDataclassError, match="rms_norm_eps = inf is out of range"):
            AutoConfig.from_pretrained(tmp_path, rms_norm_eps=float("inf"))

    def test_mutation_is_caught_at_save_time(self, tmp_path):
        config = VCQConfig.from_preset("tiny")
        config.codebook_sizes = [2, 4, 8, 16, 8]
        with pytest.raises(Exception, match="monotone") as info:
            config.save_pretrained(tmp_path)
        assert isinstance(info.value.__cause__, ValueError)

    def test_round_trip_and_auto_config(self, tmp_path):
        config = VCQConfig.from_preset("small", num_classes=12)
        config.save_pretrained(tmp_path)
        reloaded = AutoConfig.from_pretrained(tmp_path)
        assert type(reloaded) is VCQConfig
        assert reloaded.to_diff_dict() == config.to_diff_dict()
        assert reloaded.vocab_size == 1024 + 12 + 1

    def test_from_vq_config(self):
        vq = SimpleNamespace(codebook_size=16, codebook_sizes=[4, 8, 16], num_tokens=3)
        config = VCQConfig.from_vq_config(vq, preset="tiny", num_classes=5)
        assert (config.codebook_sizes, config.num_image_tokens, config.num_classes) == ([4, 8, 16], 3, 5)
        assert config.hidden_size == VCQConfig.from_preset("tiny").hidden_size

    def test_unknown_preset(self):
        with pytest.raises(ValueError, match="known presets"):
            VCQConfig.from_preset("vcq-m")

    def test_llamagen_ffn_rule(self):
        assert [llamagen_intermediate_size(d) for d in (768, 1024, 1280)] == [2048, 2816, 3584]


# Parameter counts (untied input/output embeddings, vocabulary K_max + classes + 1), built on the meta device.
@pytest.mark.parametrize(
    "name, target, tolerance",
    [
        ("vcq-b", 111e6, 0.01),
        ("vcq-l", 343e6, 0.01),
        ("vcq-xl", 775e6, 0.01),
        ("vcq-684m", 684e6, 0.005),
        ("small", 4.5e6, 0.34),  # 3-6M for the demo data
    ],
)
def test_preset_parameter_counts(name, target, tolerance):
    config = VCQConfig.from_preset(name)
    with torch.device("meta"):
        model = VCQForCausalLM(config)
    count = sum(parameter.numel() for parameter in model.parameters())
    assert abs(count - target) <= tolerance * target, f"{name}: {count:,} parameters, target {target:,.0f}"
    if name.startswith("vcq-"):
        assert (config.codebook_size, config.num_classes, config.num_image_tokens) == (16384, 1000, 256)
        assert config.vocab_size == 17385


def test_preset_schedules_match_the_tokenizer_presets():
    from vcq_hf import VCQVQConfig

    small, imagenet = VCQVQConfig.from_preset("small-32px"), VCQVQConfig.from_preset("imagenet-256")
    assert VCQConfig.from_preset("small").codebook_sizes == list(small.codebook_sizes)
    for name in ("vcq-b", "vcq-l", "vcq-xl", "vcq-684m"):
        assert VCQConfig.from_preset(name).codebook_sizes == list(imagenet.codebook_sizes), name


def test_presets_have_llamagen_dimensions():
    dims = {
        name: (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size)
        for name in ("vcq-b", "vcq-l", "vcq-xl")
        for c in [VCQConfig.from_preset(name)]
    }
    assert dims == {"vcq-b": (768, 12, 12, 2048), "vcq-l": (1024, 24, 16, 2816), "vcq-xl": (1280, 36, 20, 3584)}


# ---------------------------------------------------------------- loss
def test_build_input_ids():
    model = tiny_model()
    codes = random_codes(model.config, 2)
    ids = model.build_input_ids([2, 0], codes)
    assert ids.shape == (2, 6) and ids.dtype == torch.long
    assert ids[:, 0].tolist() == [18, 16] and torch.equal(ids[:, 1:], codes)
    assert model.build_input_ids(torch.tensor([1, 2])).tolist() == [[17], [18]]


def test_loss_is_next_token_cross_entropy_on_image_tokens_only():
    model = tiny_model().eval()
    ids = model.build_input_ids([0, 1, 2], random_codes(model.config, 3))
    out = model(input_ids=ids, labels=ids)
    expected = F.cross_entropy(out.logits[:, :-1].reshape(-1, 20), ids[:, 1:].reshape(-1))
    torch.testing.assert_close(out.loss, expected)
    assert out.logits.shape == (3, 6, 20)
    # the class token is never a target: changing it in labels leaves the loss unchanged
    labels = ids.clone()
    labels[:, 0] = -100
    torch.testing.assert_close(model(input_ids=ids, labels=labels).loss, out.loss)
    # -100 image labels are ignored
    labels[:, 3:] = -100
    partial = F.cross_entropy(out.logits[:, :2].reshape(-1, 20), ids[:, 1:3].reshape(-1))
    torch.testing.assert_close(model(input_ids=ids, labels=labels).loss, partial)


def test_loss_with_num_items_in_batch_sums():
    model = tiny_model().eval()
    ids = model.build_input_ids([0, 1], random_codes(model.config, 2))
    mean = model(input_ids=ids, labels=ids).loss
    summed = model(input_ids=ids, labels=ids, num_items_in_batch=5).loss
    torch.testing.assert_close(summed, mean * 10 / 5)


def test_masked_logits_loss_option():
    model = tiny_model().eval()
    masked_model = tiny_model(mask_logits_in_loss=True).eval()
    masked_model.load_state_dict(model.state_dict())
    ids = model.build_input_ids([0, 1, 2], random_codes(model.config, 3))
    plain, masked = model(input_ids=ids, labels=ids), masked_model(input_ids=ids, labels=ids)
    torch.testing.assert_close(masked.logits, plain.logits)  # returned logits are never masked
    logits = plain.logits[:, :-1].clone()
    for position, size in enumerate(model.config.codebook_sizes):
        logits[:, position, size:] = -float("inf")
    expected = F.cross_entropy(logits.reshape(-1, 20), ids[:, 1:].reshape(-1))
    torch.testing.assert_close(masked.loss, expected)
    assert masked.loss < plain.loss


def test_loss_backward_reaches_all_parameters():
    model = tiny_model(class_dropout_prob=0.0).train()
    ids = model.build_input_ids([0, 1], random_codes(model.config, 2))
    model(input_ids=ids, labels=ids).loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    # class-token rows of the output head get gradient through the softmax; nothing is left out
    assert missing == []


# ---------------------------------------------------------------- class dropout
def test_class_dropout_only_in_training_mode():
    model = tiny_model(class_dropout_prob=1.0)
    ids = model.build_input_ids([0, 1, 2], random_codes(model.config, 3))
    null_ids = ids.clone()
    null_ids[:, 0] = model.config.null_class_token_id
    model.eval()
    eval_logits = model(input_ids=ids).logits
    null_logits = model(input_ids=null_ids).logits
    model.train()  # no dropout layers in the tiny config, so train mode differs only by class dropout
    train_logits = model(input_ids=ids).logits
    torch.testing.assert_close(train_logits, null_logits)
    assert not torch.allclose(eval_logits, null_logits)


def test_class_dropout_rate():
    model = tiny_model(class_dropout_prob=0.25).train()
    torch.manual_seed(0)
    ids = model.build_input_ids(torch.zeros(4000, dtype=torch.long))
    dropped = (model._class_dropout(ids)[:, 0] == model.config.null_class_token_id).float().mean().item()
    assert 0.22 < dropped < 0.28
    never = tiny_model(class_dropout_prob=0.0).train()
    ids = never.build_input_ids([0, 1], random_codes(never.config, 2))
    reference = tiny_model(class_dropout_prob=0.0).eval()
    torch.testing.assert_close(never(input_ids=ids).logits, reference(input_ids=ids).logits)


# ---------------------------------------------------------------- bad input
def test_bad_inputs_raise_value_errors():
    model = tiny_model().eval()
    codes = random_codes(model.config, 2)
    with pytest.raises(ValueError, match=r"outside the allowed range \[0, 3\)"):
        model.build_input_ids([0, 3], codes)
    bad_codes = codes.clone()
    bad_codes[1, 2] = 8  # K_2 = 8
    with pytest.raises(ValueError, match=r"input_ids\[1, 3\] = 8 is not a valid image code at image position 2: "):
        model.build_input_ids([0, 1], bad_codes)
    ids = model.build_input_ids([0, 1], codes)
    ids[0, 1] = 2  # K_0 = 2
    with pytest.raises(ValueError, match=r"allowed range \[0, K_0\) = \[0, 2\)"):
        model(input_ids=ids, labels=ids)
    ids = model.build_input_ids([0, 1], codes)
    ids[0, 0] = 5
    with pytest.raises(ValueError, match="position 0 must hold a class token"):
        model(input_ids=ids)
    too_long = torch.cat([model.build_input_ids([0, 1], codes), torch.zeros(2, 1, dtype=torch.long)], dim=1)
    with pytest.raises(ValueError, match="at most 1 \\+ num_image_tokens = 6"):
        model(input_ids=too_long)
    ids = model.build_input_ids([0, 1], codes)
    with pytest.raises(ValueError, match="labels shape"):
        model(input_ids=ids[:, :3], labels=ids)


def test_bad_generate_inputs():
    model = tiny_model().eval()
    codes = random_codes(model.config, 1)
    full = model.build_input_ids([0], codes)
    too_long = torch.cat([full, torch.zeros(1, 1, dtype=torch.long)], dim=1)
    with pytest.raises(ValueError, match=r"Input length of input_ids is 7, but `max_length` is set to 6"):
        model.generate(too_long)
    with pytest.raises(ValueError, match=r"image position 5 .*outside the schedule's positions \[0, 5\)"):
        model.generate(full[:, :3], max_new_tokens=5)
    bad = full[:, :3].clone()
    bad[0, 2] = 9  # K_1 = 4
    with pytest.raises(ValueError, match="not a valid image code at image position 1"):
        model.generate(bad)


def test_generate_defaults_fill_the_sequence():
    model = tiny_model().eval()
    out = model.generate(model.build_input_ids([0, 1]))
    assert out.shape == (2, 6)
    partial = model.generate(model.build_input_ids([0, 1]), max_new_tokens=2)
    assert partial.shape == (2, 3)
    # a prompt with given codes continues up to the full sequence (max_length = 1 + T)
    prompt = model.build_input_ids([2], random_codes(model.config, 1)[:, :2])
    assert model.generate(prompt).shape == (1, 6)


def test_incremental_decoding_matches_full_forward():
    model = tiny_model().eval()
    ids = model.build_input_ids([0, 2], random_codes(model.config, 2))
    full = model(input_ids=ids).logits
    prefix = model(input_ids=ids[:, :3], use_cache=True)
    step = model(input_ids=ids[:, 3:4], cache=prefix.cache, use_cache=True)
    torch.testing.assert_close(step.logits[:, -1], full[:, 3], atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- save / load / remote code
def test_save_load_round_trip(tmp_path):
    model = tiny_model().eval()
    model.save_pretrained(tmp_path)
    generation = json.loads((tmp_path / "generation_config.json").read_text())
    assert generation["do_sample"] is True and generation["max_length"] == 6
    assert generation.get("temperature", 1.0) == 1.0 and generation.get("top_k") in (None, 0)
    saved_config = json.loads((tmp_path / "config.json").read_text())
    assert saved_config["auto_map"] == {
        "AutoConfig": "configuration_vcq.VCQConfig",
        "AutoModelForCausalLM": "modeling_vcq.VCQForCausalLM",
    }
    for module in ("configuration_vcq.py", "modeling_vcq.py", "generation.py", "schedules.py", "presets.py"):
        assert (tmp_path / module).is_file(), module

    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(reloaded) is VCQForCausalLM
    assert isinstance(reloaded.generation_config, GenerationConfig) and reloaded.generation_config.do_sample
    ids = model.build_input_ids([0, 1], random_codes(model.config, 2))
    torch.testing.assert_close(reloaded(input_ids=ids).logits, model(input_ids=ids).logits)
    assert reloaded.config.codebook_sizes == model.config.codebook_sizes


@pytest.mark.subprocess
@pytest.mark.parametrize("num_classes", [5, 2])
def test_from_pretrained_changes_the_class_count(tmp_path, num_classes):
    model = tiny_model(seed=3)  # K_max = 16, 3 classes: vocab [codes 0..15 | classes 16..18 | null 19]
    model.save_pretrained(tmp_path / "saved")
    loaders = {
        "model": lambda: VCQForCausalLM.from_pretrained(tmp_path / "saved", num_classes=num_classes),
        "auto": lambda: AutoModelForCausalLM.from_pretrained(tmp_path / "saved", num_classes=num_classes),
    }
    kept, old_null, new_null = min(3, num_classes), 16 + 3, 16 + num_classes
    for name, load in loaders.items():
        resized = load()
        assert (resized.config.num_classes, resized.config.vocab_size) == (num_classes, new_null + 1), name
        assert resized.config.null_class_token_id == new_null
        for before, after in [
            (model.get_input_embeddings().weight, resized.get_input_embeddings().weight),
            (model.lm_head.weight, resized.lm_head.weight),
        ]:
            assert after.shape == (new_null + 1, 24)
            assert torch.equal(after[: 16 + kept], before[: 16 + kept])  # codes and kept classes
            assert torch.equal(after[new_null], before[old_null])  # the null class moved
            assert all(torch.equal(after[16 + c], before[old_null]) for c in range(kept, num_classes))  # new classes
    # Saved correctly: reloads without overrides, and samples with the last class.
    resized.save_pretrained(tmp_path / "resized")
    reloaded = VCQForCausalLM.from_pretrained(tmp_path / "resized")
    assert reloaded.config.num_classes == num_classes
    assert torch.equal(reloaded.get_input_embeddings().weight, resized.get_input_embeddings().weight)
    out = reloaded.generate(reloaded.build_input_ids([num_classes - 1]))
    assert out[0, 0] == 16 + num_classes - 1 and bool((out[:, 1:] < torch.tensor([2, 4, 8, 16, 16])).all())
    with pytest.raises(ValueError, match="num_classes = 0 is out of range"):
        reloaded.resize_num_classes(0)


def test_trust_remote_code_without_vcq_hf(tmp_path):
    model = tiny_model(seed=5).eval()
    model.save_pretrained(tmp_path / "model")
    expected = model.generate(model.build_input_ids([0, 2]), do_sample=False).tolist()
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.modules["vcq_hf"] = None  # make `import vcq_hf` fail
        try:
            import vcq_hf
        except ImportError:
            pass
        else:
            raise SystemExit("vcq_hf is importable")
        from transformers import AutoModelForCausalLM
        model = AutoModelForCausalLM.from_pretrained({str(tmp_path / "model")!r}, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        out = model.generate(model.build_input_ids([0, 2]), do_sample=False)
        print(json.dumps({{"cls": type(model).__name__, "out": out.tolist()}}))
        """
    )
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    env["OMP_NUM_THREADS"] = "1"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=240
    )
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload == {"cls": "VCQForCausalLM", "out": expected}


def test_schedule_aware_head_slices_the_logits_and_keeps_the_full_loss():
    model = tiny_model().eval()
    ids = model.build_input_ids([0, 2], random_codes(model.config, 2))
    full = model(input_ids=ids).logits
    sliced = model(input_ids=ids, vocab_limit=4).logits
    assert sliced.shape == (*full.shape[:2], 4)
    torch.testing.assert_close(sliced, full[..., :4])
    with pytest.raises(ValueError, match="training loss needs the full-vocabulary logits"):
        model(input_ids=ids, labels=ids, vocab_limit=4)
    with pytest.raises(ValueError, match=r"vocab_limit = 0 is out of range: it must be in \[1, vocab_size = 20\]"):
        model(input_ids=ids, vocab_limit=0)
    assert model(input_ids=ids, labels=ids).logits.shape[-1] == model.config.vocab_size
