"""VCQMask on hand-built scores, under every decoding mode of `generate`, and with classifier-free guidance."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessorList, TemperatureLogitsWarper

from vcq_hf import VCQConfig, VCQForCausalLM, VCQMask
from vcq_hf.generation import classifier_free_guidance


SIZES = [2, 4, 8, 16, 16]


def tiny_model(seed: int = 0, **overrides) -> VCQForCausalLM:
    torch.manual_seed(seed)
    return VCQForCausalLM(VCQConfig.from_preset("tiny", **overrides)).eval()


def favour_invalid_ids(model: VCQForCausalLM, boost: float = 50.0):
    """Forward hook on the LM head adding `boost` to the null class and to the largest image code, so that an
    unmasked decoder would pick invalid ids; returns the hook handle."""
    bias = torch.zeros(model.config.vocab_size)
    bias[model.config.null_class_token_id] = boost
    bias[model.config.codebook_size - 1] = boost - 1.0

    def hook(module, args, output):
        return output + bias

    return model.lm_head.register_forward_hook(hook)


def assert_valid_codes(sequences: torch.Tensor, sizes=SIZES):
    limits = torch.tensor(sizes)
    assert sequences.shape[1] == 1 + len(sizes)
    image = sequences[:, 1:]
    assert bool(((image >= 0) & (image < limits)).all()), sequences.tolist()


# ---------------------------------------------------------------- the processor on hand-built scores
class TestVCQMaskUnit:
    def test_exact_mask_per_position(self):
        mask = VCQMask(codebook_sizes=[2, 4, 8], prompt_length=1)
        scores = torch.randn(3, 10)
        for position, limit in enumerate([2, 4, 8]):
            input_ids = torch.zeros(3, 1 + position, dtype=torch.long)
            out = mask(input_ids, scores)
            expected_row = [False] * limit + [True] * (10 - limit)
            assert torch.isinf(out).tolist() == [expected_row] * 3
            assert bool((out < 0)[torch.isinf(out)].all())  # -inf, not +inf
            torch.testing.assert_close(out[:, :limit], scores[:, :limit])

    def test_prompt_length_shifts_position(self):
        mask = VCQMask(codebook_sizes=[2, 4, 8], prompt_length=3)
        out = mask(torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 12))  # position 4 - 3 = 1
        assert torch.isinf(out).tolist() == [[False] * 4 + [True] * 8] * 2

    def test_class_and_null_tokens_masked(self):
        config = VCQConfig.from_preset("tiny")
        mask = VCQMask(config.codebook_sizes, prompt_length=1)
        out = mask(torch.zeros(1, 5, dtype=torch.long), torch.zeros(1, config.vocab_size))  # last position, K=16
        assert not torch.isinf(out[0, : config.codebook_size]).any()
        assert torch.isinf(out[0, config.codebook_size :]).all()  # 3 class tokens + null token

    def test_does_not_modify_scores_in_place(self):
        scores = torch.randn(2, 10)
        before = scores.clone()
        out = VCQMask([2, 4], prompt_length=0)(torch.zeros(2, 0, dtype=torch.long), scores)
        torch.testing.assert_close(scores, before)
        assert out.data_ptr() != scores.data_ptr()

    def test_list_equals_sequential(self):
        scores = torch.randn(4, 10)
        input_ids = torch.zeros(4, 2, dtype=torch.long)
        mask, temperature = VCQMask([2, 4, 8], prompt_length=1), TemperatureLogitsWarper(0.5)
        processed_list = LogitsProcessorList([temperature, mask])(input_ids, scores)
        processed_sequential = mask(input_ids, temperature(input_ids, scores))
        torch.testing.assert_close(processed_list, processed_sequential)

    @pytest.mark.parametrize(
        "kwargs, match",
        [
            ({"codebook_sizes": [4, 2]}, "monotone"),
            ({"codebook_sizes": [0, 2]}, ">= 1"),
            ({"codebook_sizes": []}, "empty"),
            ({"codebook_sizes": [2, 4], "prompt_length": -1}, "prompt_length"),
            ({"codebook_sizes": [2, 4], "prompt_length": 1.5}, "prompt_length"),
        ],
    )
    def test_bad_arguments(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            VCQMask(**kwargs)

    def test_position_outside_schedule(self):
        mask = VCQMask([2, 4], prompt_length=1)
        with pytest.raises(ValueError, match=r"image position 2 .*\[0, 2\)"):
            mask(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 10))
        with pytest.raises(ValueError, match=r"image position -1"):
            mask(torch.zeros(1, 0, dtype=torch.long), torch.zeros(1, 10))

    def test_codebook_larger_than_vocab(self):
        with pytest.raises(ValueError, match="exceeds the vocabulary size 3"):
            VCQMask([4], prompt_length=0)(torch.zeros(1, 0, dtype=torch.long), torch.zeros(1, 3))

    def test_mask_without_schedule_says_what_to_pass(self):
        mask = VCQMask()
        assert mask.codebook_sizes is None
        with pytest.raises(ValueError, match=r"VCQMask\(codebook_sizes=config.codebook_sizes, prompt_length="):
            mask(torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 10))

    @pytest.mark.parametrize("value", [float("nan"), float("inf"), None, True])
    def test_prompt_length_must_be_an_int(self, value):
        with pytest.raises(ValueError, match="prompt_length"):
            VCQMask([2, 4], prompt_length=value)


def test_classifier_free_guidance_formula():
    cond, uncond = torch.tensor([[1.0, 2.0, 0.0]]), torch.tensor([[0.5, 0.5, 0.5]])
    torch.testing.assert_close(classifier_free_guidance(cond, uncond, 3.0), torch.tensor([[2.0, 5.0, -1.0]]))
    torch.testing.assert_close(classifier_free_guidance(cond, uncond, 1.0), cond)
    with pytest.raises(ValueError, match="same shape"):
        classifier_free_guidance(cond, uncond[:, :2], 2.0)


# ---------------------------------------------------------------- the mask inside generate
@pytest.fixture(scope="module")
def biased_model():
    model = tiny_model()
    handle = favour_invalid_ids(model)
    yield model
    handle.remove()


def test_without_mask_the_biased_model_picks_invalid_ids(biased_model):
    # Makes the decoding-mode tests below meaningful: the raw model's argmax is the null class token.
    prompt = biased_model.build_input_ids([0, 1])
    logits = biased_model(prompt).logits[:, -1]
    assert logits.argmax(-1).tolist() == [biased_model.config.null_class_token_id] * 2


@pytest.mark.parametrize(
    "generate_kwargs",
    [
        {"do_sample": False},
        {"do_sample": True},
        {"do_sample": True, "temperature": 0.7},
        {"do_sample": True, "top_k": 3},
        {"do_sample": True, "top_p": 0.9},
        {"do_sample": True, "temperature": 1.3, "top_k": 5, "top_p": 0.8},
        {"do_sample": True, "num_return_sequences": 3},
        {"do_sample": False, "num_beams": 3},
        {"do_sample": False, "num_beams": 3, "num_return_sequences": 2},
        {"do_sample": True, "num_beams": 2},
    ],
    ids=lambda kwargs: ",".join(f"{k}={v}" for k, v in kwargs.items()),
)
def test_mask_holds_for_every_decoding_mode(biased_model, generate_kwargs):
    torch.manual_seed(1)
    prompt = biased_model.build_input_ids([0, 2])
    out = biased_model.generate(prompt, **generate_kwargs)
    expected_rows = 2 * generate_kwargs.get("num_return_sequences", 1)
    assert out.shape == (expected_rows, 6)
    assert_valid_codes(out)
    # prompt rows are kept and repeated per returned sequence
    assert out[:, 0].tolist() == prompt[:, 0].repeat_interleave(expected_rows // 2).tolist()


@pytest.mark.parametrize(
    "logits_processor",
    [None, VCQMask(), [VCQMask()], LogitsProcessorList([VCQMask()]), VCQMask(SIZES, prompt_length=1)],
    ids=["none", "bare-model-schedule", "list-model-schedule", "processor-list", "bare-own-schedule"],
)
def test_generate_accepts_mask_forms(biased_model, logits_processor):
    out = biased_model.generate(biased_model.build_input_ids([1]), do_sample=False, logits_processor=logits_processor)
    assert_valid_codes(out)


def test_mask_without_schedule_is_not_mutated_by_generate(biased_model):
    mask = VCQMask()
    biased_model.generate(biased_model.build_input_ids([1]), logits_processor=mask)
    assert mask.codebook_sizes is None


def test_generate_uses_the_model_specific_processor_hook(biased_model):
    # The model adds its mask through transformers' `_get_logits_processor` hook, not a `generate` override.
    from transformers import GenerationMixin

    assert "generate" not in type(biased_model).__dict__
    assert "_get_logits_processor" in type(biased_model).__dict__
    config = biased_model.generation_config
    processors = biased_model._get_logits_processor(config, logits_processor=None)
    assert [type(p).__name__ for p in processors] == ["VCQMask"]
    assert processors[0].codebook_sizes == tuple(SIZES)
    assert isinstance(biased_model, GenerationMixin)


@pytest.mark.parametrize("guidance_scale", [1.0, 3.0])
def test_static_cache_generate_gives_the_same_codes(guidance_scale):
    model = tiny_model(seed=5)
    prompt = model.build_input_ids([0, 1, 2])
    dynamic = model.generate(prompt, do_sample=False, guidance_scale=guidance_scale, logits_processor=VCQMask())
    static = model.generate(
        prompt,
        do_sample=False,
        guidance_scale=guidance_scale,
        cache_implementation="static",
        logits_processor=VCQMask(),
    )
    assert torch.equal(static, dynamic)
    assert_valid_codes(static)
    torch.manual_seed(3)
    sampled_dynamic = model.generate(prompt, top_k=5, logits_processor=VCQMask())
    torch.manual_seed(3)
    sampled_static = model.generate(prompt, top_k=5, cache_implementation="static", logits_processor=VCQMask())
    assert torch.equal(sampled_static, sampled_dynamic)


def test_prompt_with_given_codes_continues_at_the_right_position(biased_model):
    codes = torch.tensor([[1, 3]])
    prompt = biased_model.build_input_ids([2], codes)
    out = biased_model.generate(prompt, do_sample=False)
    assert out.shape == (1, 6) and out[0, :3].tolist() == prompt[0].tolist()
    assert_valid_codes(out)


def test_mask_with_a_plain_llama_model():
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=20,
        hidden_size=16,
        intermediate_size=24,
        num_hidden_layers=1,
        num_attention_heads=2,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    model = LlamaForCausalLM(config).eval()
    prompt = torch.tensor([[17, 18], [19, 17]])  # two prefix tokens
    mask = VCQMask(codebook_sizes=[2, 3, 5], prompt_length=2)
    out = model.generate(prompt, do_sample=True, max_new_tokens=3, logits_processor=LogitsProcessorList([mask]))
    assert bool((out[:, 2:] < torch.tensor([2, 3, 5])).all())
    with pytest.raises(ValueError, match="Only VCQForCausalLM.generate supplies its own schedule"):
        model.generate(prompt, max_new_tokens=1, logits_processor=LogitsProcessorList([VCQMask()]))


def test_mask_on_a_full_size_vocabulary():
    # vcq-b-sized vocabulary (K_max = 16384 + 1001 class tokens): only the first K_0 = 2 ids survive at t = 0.
    scores = torch.randn(8, 17385)
    out = VCQMask([2] * 255 + [16384], prompt_length=1)(torch.zeros(8, 1, dtype=torch.long), scores)
    assert torch.isinf(out[:, 2:]).all() and not torch.isinf(out[:, :2]).any() and not torch.isinf(scores).any()


# ---------------------------------------------------------------- classifier-free guidance
def reference_cfg_greedy(model: VCQForCausalLM, class_labels, guidance_scale: float):
    """Hand-written guidance: full recomputation (no cache) of conditional and unconditional logits each step,
    guidance on log-probabilities (transformers' formula), then the VCQ mask, then argmax."""
    config = model.config
    cond = model.build_input_ids(class_labels)
    uncond = torch.full_like(cond, config.null_class_token_id)
    all_scores = []
    for position, limit in enumerate(config.codebook_sizes):
        with torch.no_grad():
            cond_logp = torch.log_softmax(model(cond).logits[:, -1].float(), dim=-1)
            uncond_logp = torch.log_softmax(model(uncond).logits[:, -1].float(), dim=-1)
        guided = uncond_logp + guidance_scale * (cond_logp - uncond_logp)
        guided[:, limit:] = -float("inf")
        all_scores.append(guided)
        next_ids = guided.argmax(dim=-1, keepdim=True)
        cond, uncond = torch.cat([cond, next_ids], 1), torch.cat([uncond, next_ids], 1)
    return cond, all_scores


@pytest.mark.parametrize("guidance_scale", [1.5, 4.0])
def test_cfg_matches_hand_written_reference(guidance_scale):
    model = tiny_model(seed=3)
    prompt = model.build_input_ids([0, 1, 2])
    expected, expected_scores = reference_cfg_greedy(model, [0, 1, 2], guidance_scale)
    for negative in (None, torch.full_like(prompt, model.config.null_class_token_id)):
        out = model.generate(
            prompt,
            do_sample=False,
            guidance_scale=guidance_scale,
            negative_prompt_ids=negative,
            return_dict_in_generate=True,
            output_scores=True,
        )
        assert out.sequences.tolist() == expected.tolist()
        for got, want in zip(out.scores, expected_scores):
            assert torch.isinf(got).tolist() == torch.isinf(want).tolist()
            finite = ~torch.isinf(want)
            torch.testing.assert_close(got[finite], want[finite], atol=1e-4, rtol=1e-4)


def test_cfg_default_uses_null_class_not_the_class_token():
    # Stock transformers would use the last prompt token (the class token) as the unconditional prompt, which
    # makes guidance a no-op on the first step. VCQForCausalLM must use the null class instead.
    model = tiny_model(seed=4)
    prompt = model.build_input_ids([0])
    kwargs = {"do_sample": False, "guidance_scale": 5.0, "return_dict_in_generate": True, "output_scores": True}
    first_default = model.generate(prompt, **kwargs).scores[0]
    first_self = model.generate(prompt, negative_prompt_ids=prompt.clone(), **kwargs).scores[0]
    first_null = model.generate(
        prompt, negative_prompt_ids=torch.full_like(prompt, model.config.null_class_token_id), **kwargs
    ).scores[0]
    torch.testing.assert_close(first_default, first_null)
    assert not torch.allclose(first_default[:, :2], first_self[:, :2])


@pytest.mark.parametrize(
    "generate_kwargs",
    [
        {"do_sample": False},
        {"do_sample": True, "top_k": 3},
        {"do_sample": True, "temperature": 0.5, "top_p": 0.9, "num_return_sequences": 2},
    ],
)
def test_cfg_then_mask_has_no_nan_and_no_masked_id(biased_model, generate_kwargs):
    torch.manual_seed(2)
    out = biased_model.generate(
        biased_model.build_input_ids([0, 2]),
        guidance_scale=3.0,
        return_dict_in_generate=True,
        output_scores=True,
        logits_processor=VCQMask(),
        **generate_kwargs,
    )
    for scores in out.scores:
        assert not torch.isnan(scores).any()
    assert_valid_codes(out.sequences)


def test_masking_before_guidance_would_produce_nan():
    # Why the order matters: both inputs masked with -inf give -inf - -inf = NaN in the guidance combination.
    masked = VCQMask([2], prompt_length=1)(torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 5))
    assert torch.isnan(classifier_free_guidance(masked, masked, 2.0)).any()
