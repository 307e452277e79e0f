"""Training attention in memory linear in tokens: ``ChunkedAttention`` computes what
``softmax(Q K^T / sqrt(d) + B) V`` computes, gradients included (restore/models/mixers/attention.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from restore.models import MAXIM
from restore.models.mixers import attention
from restore.models.mixers.attention import SelfAttention
from tests.helpers import TINY_MAXIM


def direct_attention(q, k, v, bias):
    """The definition: one softmax over each query's biased scores, every T x T matrix kept."""
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5 + bias
    return scores.softmax(-1) @ v


def gradients(module: torch.nn.Module, inputs: list[torch.Tensor], loss) -> dict[str, torch.Tensor]:
    module.zero_grad(set_to_none=True)
    for x in inputs:
        x.grad = None
    loss().backward()
    grads = {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}
    grads.update({f"input{i}": x.grad.clone() for i, x in enumerate(inputs)})
    return grads


def output_and_gradients(module, inputs, forward, core, monkeypatch):
    monkeypatch.setattr(attention, "windowed_attention", core)
    out = forward()
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    grads = gradients(module, inputs, lambda: (forward() * weights).sum())
    monkeypatch.undo()
    return out.detach(), grads


@pytest.fixture
def small_chunks(monkeypatch):
    # Two windows per chunk at T=12, heads=2: several chunks and a ragged last one.
    monkeypatch.setattr(attention, "CHUNK_BYTES", 2 * 2 * 12 * 12 * 4)


def test_chunked_attention_equals_the_direct_softmax_with_its_gradients(small_chunks, monkeypatch):
    torch.manual_seed(0)
    layer = SelfAttention(8, (3, 4), heads=2)
    tokens = torch.randn(2, 5, 12, 8, requires_grad=True)
    gate = torch.rand(2, 1, 1, 8, requires_grad=True)  # the mixing block's value gate
    inputs = [tokens, gate]

    def forward():
        return layer(tokens, value_gate=gate)

    chunked = output_and_gradients(layer, inputs, forward, attention.windowed_attention, monkeypatch)
    direct = output_and_gradients(layer, inputs, forward, direct_attention, monkeypatch)
    torch.testing.assert_close(chunked[0], direct[0], rtol=1e-5, atol=1e-6)
    assert (
        chunked[1].keys() == direct[1].keys() == {"qkv.weight", "qkv.bias", "relative_bias.table", "input0", "input1"}
    )
    for name in direct[1]:
        torch.testing.assert_close(
            chunked[1][name], direct[1][name], rtol=1e-5, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}"
        )


@pytest.mark.parametrize(
    "variant", [{"mixer": "attention"}, {"mixer": "mixing"}, {"mixer": "attention", "block": "maxvit"}]
)
def test_every_attention_model_trains_as_with_the_direct_softmax(variant, small_chunks, monkeypatch):
    torch.manual_seed(0)
    model = MAXIM(**{**TINY_MAXIM, **variant, "num_stages": 1, "depth": 2, "num_supervision_scales": 1})
    x = torch.rand(1, 3, 32, 32, requires_grad=True)

    def run(core):
        return output_and_gradients(model, [x], lambda: model(x)[-1][0], core, monkeypatch)

    (chunked, chunked_grads), (direct, direct_grads) = run(attention.windowed_attention), run(direct_attention)
    torch.testing.assert_close(chunked, direct, rtol=1e-5, atol=1e-5)
    assert chunked_grads.keys() == direct_grads.keys()
    tables = [name for name in direct_grads if name.endswith("relative_bias.table")]
    assert tables

    def error(names):
        got, want = (torch.cat([grads[n].flatten() for n in names]) for grads in (chunked_grads, direct_grads))
        return ((got - want).norm() / want.norm()).item()

    # A few tensors behind a sigmoid gate get gradients near fp32's rounding whatever the
    # attention (measured: ~4e-5 of their norm off fp64, direct softmax and chunked alike).
    assert error(list(direct_grads)) < 1e-5
    assert all(error([name]) < 1e-5 for name in tables)
    assert all(error([name]) < 2e-4 for name in direct_grads)


def test_under_bf16_autocast_the_error_is_that_of_sdpa(small_chunks, monkeypatch):
    """Against the fp32 definition, the chunked bf16 path errs no more than SDPA under
    autocast did (the implementation it replaces), output and gradients."""
    torch.manual_seed(0)
    layer = SelfAttention(64, (4, 4), heads=2)
    tokens = torch.randn(2, 6, 16, 64, requires_grad=True)

    def forward():
        return layer(tokens)

    def under_autocast():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return layer(tokens).float()

    def sdpa(q, k, v, bias):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)

    exact = output_and_gradients(layer, [tokens], forward, direct_attention, monkeypatch)
    results = {
        name: output_and_gradients(layer, [tokens], under_autocast, core, monkeypatch)
        for name, core in (("chunked", attention.windowed_attention), ("sdpa", sdpa))
    }
    assert results["chunked"][0].dtype == torch.float32

    def error(result, name=None):
        got, want = (result[0], exact[0]) if name is None else (result[1][name], exact[1][name])
        return ((got - want).norm() / want.norm()).item()

    for name in [None, *exact[1]]:
        chunked, sdpa_error = error(results["chunked"], name), error(results["sdpa"], name)
        assert 0 < chunked < 0.02 and chunked <= 1.5 * sdpa_error, (name, chunked, sdpa_error)


def test_the_parameters_are_those_of_the_direct_attention():
    layer = SelfAttention(64, (3, 4))
    assert list(layer.state_dict()) == ["qkv.weight", "qkv.bias", "relative_bias.table"]
    assert sum(p.numel() for p in layer.parameters()) == 64 * 3 * 64 + 3 * 64 + 2 * 5 * 7


def test_without_gradients_it_is_sdpa():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 4, 2, 12, 8).unbind(0)
    bias = torch.randn(2, 12, 12, requires_grad=True)
    with torch.no_grad():
        torch.testing.assert_close(attention.windowed_attention(q, k, v, bias), direct_attention(q, k, v, bias))
