import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vcq_hf.utils.onednn import linear, onednn_available, onednn_linears


pytestmark = pytest.mark.skipif(not onednn_available(), reason="this torch build has no oneDNN")


def test_linear_equals_f_linear_up_to_rounding():
    torch.manual_seed(0)
    x, w, b = torch.randn(3, 1, 37), torch.randn(11, 37), torch.randn(11)
    with torch.no_grad():
        torch.testing.assert_close(linear(x, w, b), F.linear(x, w, b), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(linear(x[:, 0], w[:5]), F.linear(x[:, 0], w[:5]), atol=1e-5, rtol=1e-5)


def test_onednn_linears_switches_plain_linears_and_restores_them():
    model = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 4, bias=False))
    x = torch.randn(5, 8)
    with torch.no_grad():
        want = model(x)
        with onednn_linears(model):
            assert all("forward" in m.__dict__ for m in model if isinstance(m, nn.Linear))
            got = model(x)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    assert not any("forward" in m.__dict__ for m in model)


def test_onednn_linears_keeps_autograd_working():
    model = nn.Linear(8, 3)
    with onednn_linears(model):
        model(torch.randn(4, 8)).sum().backward()  # with grad enabled the module takes F.linear
    assert model.weight.grad is not None and model.weight.grad.shape == (3, 8)


def test_onednn_linears_restores_after_an_error():
    model = nn.Linear(4, 2)
    with pytest.raises(RuntimeError, match="boom"), onednn_linears(model):
        raise RuntimeError("boom")
    assert "forward" not in model.__dict__


def test_compiled_onednn_linear_has_no_graph_break():
    model = nn.Sequential(nn.Linear(8, 6), nn.Linear(6, 4))
    x = torch.randn(3, 8)
    with torch.no_grad():
        want = model(x)
        with onednn_linears(model):
            got = torch.compile(model, fullgraph=True, dynamic=True)(x)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
