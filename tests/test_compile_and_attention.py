"""transformers conventions both models follow (issue 15.6, 15.7): the attention interface of the tokenizer
(`attn_implementation="sdpa"` / `"eager"`), gradient checkpointing, and `torch.compile(fullgraph=True)`.

The fullgraph tests trace with dynamo's `"eager"` backend: `fullgraph=True` raises on any graph break while tracing,
whatever the backend, and skipping inductor's code generation keeps each test at seconds on a 2-core CI machine.
The inductor compile itself (minutes here) runs with RUN_SLOW=1.
"""

import pytest
import torch

import vcq_hf.modeling_vcq_vq as modeling_vcq_vq
from tests.testing_utils import slow
from vcq_hf import VCQConfig, VCQForCausalLM, VCQVQConfig, VCQVQModel


def tiny_tokenizer(seed: int = 0, **kwargs) -> VCQVQModel:
    torch.manual_seed(seed)
    return VCQVQModel(VCQVQConfig.from_preset("tiny"), **kwargs)


def tiny_prior(seed: int = 0, **overrides) -> VCQForCausalLM:
    torch.manual_seed(seed)
    return VCQForCausalLM(VCQConfig.from_preset("tiny", **overrides))


def pixel_values(batch_size: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch_size, 3, 12, 12, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def prior_input_ids(model: VCQForCausalLM) -> torch.Tensor:
    return model.build_input_ids([0, 2], torch.tensor([[1, 3, 7, 15, 0], [0, 2, 5, 9, 11]]))


# ------------------------------------------------------------------------------------------- attention interface
def test_tokenizer_attention_implementations_differ_only_in_the_kernel(tmp_path, monkeypatch):
    calls = []
    eager = modeling_vcq_vq.eager_attention_forward

    def counting_eager(*args, **kwargs):
        calls.append(1)
        return eager(*args, **kwargs)

    monkeypatch.setattr(modeling_vcq_vq, "eager_attention_forward", counting_eager)
    tiny_tokenizer().save_pretrained(tmp_path)
    images = pixel_values()
    outputs = {}
    for implementation in ("sdpa", "eager"):
        model = VCQVQModel.from_pretrained(tmp_path, attn_implementation=implementation).eval()
        assert model.config._attn_implementation == implementation
        calls.clear()
        with torch.no_grad():
            outputs[implementation] = model(images)
        assert len(calls) == (2 if implementation == "eager" else 0)  # 1 encoder + 1 decoder layer
    assert torch.allclose(outputs["sdpa"].sample, outputs["eager"].sample, atol=1e-5)
    assert torch.equal(outputs["sdpa"].codes, outputs["eager"].codes)
    assert VCQVQModel(VCQVQConfig.from_preset("tiny")).config._attn_implementation == "sdpa"  # the default


# ---------------------------------------------------------------------------------------- gradient checkpointing
def _mlp_calls_and_grads(model, mlp, loss_fn, checkpointing: bool, monkeypatch):
    """Calls of the MLP inside the first layer (its class's forward; module hooks do not see the recompute) and the
    gradients of one forward/backward in training mode."""
    if checkpointing:
        model.gradient_checkpointing_enable()
    calls = []
    mlp_class = type(mlp)
    forward = mlp_class.forward

    def counting_forward(self, *args, **kwargs):
        if self is mlp:
            calls.append(1)
        return forward(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(mlp_class, "forward", counting_forward)
        model.train()
        loss_fn(model).backward()
    return len(calls), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.filterwarnings("ignore:`gradient_checkpointing_enable` is deprecated")
@pytest.mark.parametrize("which", ["tokenizer", "prior"])
def test_gradient_checkpointing_recomputes_layers_with_the_same_gradients(which, monkeypatch):
    if which == "tokenizer":
        images = pixel_values()
        build, loss_fn = tiny_tokenizer, lambda model: model(images).loss
    else:
        build = lambda: tiny_prior(class_dropout_prob=0.0)  # noqa: E731
        ids = prior_input_ids(build())
        loss_fn = lambda model: model(input_ids=ids, labels=ids).loss  # noqa: E731
    plain, checkpointed = build(), build()
    mlp = {id(m): (m.encoder.layers if which == "tokenizer" else m.model.layers)[0].mlp for m in (plain, checkpointed)}
    assert checkpointed.supports_gradient_checkpointing
    plain_calls, plain_grads = _mlp_calls_and_grads(plain, mlp[id(plain)], loss_fn, False, monkeypatch)
    ckpt_calls, ckpt_grads = _mlp_calls_and_grads(checkpointed, mlp[id(checkpointed)], loss_fn, True, monkeypatch)
    assert (plain_calls, ckpt_calls) == (1, 2)  # the checkpointed layer ran again in the backward pass
    assert plain_grads.keys() == ckpt_grads.keys()
    for name, grad in plain_grads.items():
        assert torch.allclose(grad, ckpt_grads[name], atol=1e-6), name


# ----------------------------------------------------------------------------------------- torch.compile fullgraph
@pytest.fixture(autouse=True)
def reset_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_tokenizer_forward_and_decode_compile_without_graph_breaks():
    model = tiny_tokenizer()
    images = pixel_values()
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    output = compiled(images)  # training mode: losses and the code-usage EMA
    assert torch.isfinite(output.loss) and output.codes.shape == (3, 5)
    model.eval()
    decode = torch.compile(model.decode, fullgraph=True, backend="eager")
    with torch.no_grad():
        codes = model.encode(images).codes
        assert torch.equal(decode(codes).sample, model.decode(codes).sample)


def test_prior_forward_compiles_without_graph_breaks():
    model = tiny_prior(mask_logits_in_loss=True)
    ids = prior_input_ids(model)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    model.eval()
    with torch.no_grad():
        expected = model(input_ids=ids, labels=ids)
        output = compiled(input_ids=ids, labels=ids)
    assert torch.equal(output.logits, expected.logits) and torch.equal(output.loss, expected.loss)
    model.train()  # class dropout draws in the graph
    assert torch.isfinite(compiled(input_ids=ids, labels=ids).loss)


def test_value_checks_still_run_without_compile():
    # Under compile the data-dependent value checks are skipped; in eager mode they must still fire.
    model = tiny_prior().eval()
    bad = prior_input_ids(model).clone()
    bad[0, 1] = 7  # K_0 = 2
    with pytest.raises(ValueError, match="not a valid image code at image position 0"):
        model(input_ids=bad)
    with pytest.raises(ValueError, match="not a valid image code"):
        tiny_tokenizer().decode(torch.full((1, 5), 36))


@slow
def test_inductor_compile_matches_eager():
    tokenizer, prior = tiny_tokenizer().eval(), tiny_prior().eval()
    images, ids = pixel_values(), prior_input_ids(prior)
    with torch.no_grad():
        sample = torch.compile(tokenizer, fullgraph=True)(images).sample
        logits = torch.compile(prior, fullgraph=True)(input_ids=ids).logits
        assert torch.allclose(sample, tokenizer(images).sample, atol=1e-5)
        assert torch.allclose(logits, prior(input_ids=ids).logits, atol=1e-5)
