"""The fast paths compute what the plain formulation computes.

Each optimisation in ``layers.py`` / ``fast.py`` is checked against an
independent reference: the token mixing against a per-window Python loop,
the resizes against ``F.interpolate`` with ``antialias=True``, the oneDNN
kernels that ``for_cpu_inference`` swaps in against the plain ATen ops. The model-level checks cover activation
checkpointing (memory and gradients), ``torch.compile`` (no graph breaks),
channels_last inputs and bf16 autocast.
"""

from __future__ import annotations

import copy
import sys

import pytest
import torch
import torch._dynamo
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from restore.export import PaddedRestorer
from restore.models import MAXIM
from restore.models.fast import for_cpu_inference
from restore.models.layers import TokenDense, dense, linear_of_concat, resize
from restore.models.partition import block_partition, block_unpartition, grid_partition, grid_unpartition
from tests.helpers import ROOT, TINY_MAXIM

sys.path.insert(0, str(ROOT / "benchmarks"))
from common import TensorMemory  # noqa: E402

# Every module kind of TINY_MAXIM (SAM, both cross-gating uses, UpSampleRatio up
# and down, multi-scale heads) in fewer modules, so dynamo traces it quickly.
SMALL_MAXIM = {**TINY_MAXIM, "depth": 2, "num_supervision_scales": 2}


def mix_tokens_by_loop(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, window, across_windows):
    """Reference: visit every window (block) or every offset (grid) in Python."""
    b, h, w, c = x.shape
    fh, fw = window
    gh, gw = h // fh, w // fw
    out = torch.empty_like(x)
    if not across_windows:
        for i in range(gh):
            for j in range(gw):
                patch = x[:, i * fh : (i + 1) * fh, j * fw : (j + 1) * fw]  # (B, fh, fw, C), tokens row-major
                mixed = torch.einsum("st,btc->bsc", weight, patch.reshape(b, fh * fw, c)) + bias[:, None]
                out[:, i * fh : (i + 1) * fh, j * fw : (j + 1) * fw] = mixed.reshape(b, fh, fw, c)
    else:
        for p in range(fh):
            for q in range(fw):
                dilated = x[:, p::fh, q::fw]  # (B, gh, gw, C): one pixel of every window
                mixed = torch.einsum("st,btc->bsc", weight, dilated.reshape(b, gh * gw, c)) + bias[:, None]
                out[:, p::fh, q::fw] = mixed.reshape(b, gh, gw, c)
    return out


@pytest.mark.parametrize("onednn", [False, True], ids=["plain", "onednn"])
@pytest.mark.parametrize("across_windows", [False, True])
def test_token_mixing_matches_a_loop_over_windows(across_windows, onednn):
    torch.manual_seed(0)
    x = torch.randn(2, 12, 20, 3)
    window = (3, 4)
    # block: the 3*4 pixels of a window; grid: the 4*5 windows seen at one offset
    tokens = 3 * 4 if not across_windows else 4 * 5
    layer = TokenDense(tokens, use_bias=True)
    torch.nn.init.normal_(layer.bias)
    if onednn:
        for_cpu_inference(layer)
    with torch.no_grad():
        if across_windows:
            grid = (12 // 3, 20 // 4)
            restored = grid_unpartition(layer(grid_partition(x, grid)), x.shape, grid)
        else:
            restored = block_unpartition(layer(block_partition(x, window)), x.shape, window)
    restored = restored.reshape(x.shape)
    reference = mix_tokens_by_loop(x, layer.weight, layer.bias, window, across_windows)
    torch.testing.assert_close(restored, reference, rtol=1e-5, atol=1e-5)


def test_partitions_read_a_channel_half_and_their_inverses_restore_it():
    x = torch.randn(1, 8, 16, 6)
    half = x[..., 3:]  # strided, as the gating units' chunks are
    # block (4, 8): 4*8 tokens in each of 2*2 windows; grid (2, 2): 2*2 windows at each of 4*8 offsets
    for partition, unpartition, size, shape in [
        (block_partition, block_unpartition, (4, 8), (32, 4, 3)),
        (grid_partition, grid_unpartition, (2, 2), (4, 32, 3)),
    ]:
        tokens = partition(half, size)
        assert tokens.is_contiguous() and tokens.shape == shape
        tiled = unpartition(tokens, half.shape, size)
        assert torch.equal(tiled, half.view(tiled.shape)) and torch.equal(tiled.reshape(half.shape), half)


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_power_of_two_bilinear_resizes_match_torch_antialiased_interpolate(factor):
    torch.manual_seed(0)
    x = torch.randn(2, 32, 48, 5)  # (B, H, W, C), non-square
    nchw = x.permute(0, 3, 1, 2)
    for size in [(32 // factor, 48 // factor), (32 * factor, 48 * factor)]:
        reference = F.interpolate(nchw, size=size, mode="bilinear", antialias=True).permute(0, 2, 3, 1)
        torch.testing.assert_close(resize(x, size, "bilinear"), reference, rtol=0, atol=1e-5)


def test_other_resizes_fall_back_to_torch_and_run_in_bfloat16():
    x = torch.randn(1, 12, 18, 4)
    reference = F.interpolate(x.permute(0, 3, 1, 2), size=(8, 12), mode="bilinear", antialias=True)
    torch.testing.assert_close(resize(x, (8, 12), "bilinear"), reference.permute(0, 2, 3, 1))
    # ATen's antialiased CPU kernel has no bfloat16 version: the fallback runs it in float32.
    assert resize(x.bfloat16(), (8, 12), "bilinear").dtype == torch.bfloat16


def test_nearest_downsampling_is_a_strided_view_equal_to_nearest_exact():
    x = torch.randn(1, 16, 24, 3)
    for factor in (2, 4):
        size = (16 // factor, 24 // factor)
        reference = F.interpolate(x.permute(0, 3, 1, 2), size=size, mode="nearest-exact").permute(0, 2, 3, 1)
        out = resize(x, size, "nearest")
        assert out.data_ptr() == x.data_ptr() + (factor // 2) * (24 + 1) * 3 * x.element_size()
        assert torch.equal(out, reference)


def test_linear_of_concat_equals_the_dense_of_the_concatenation():
    torch.manual_seed(0)
    parts = [torch.randn(2, 4, 4, 3), torch.randn(2, 4, 4, 5)[..., :2], torch.randn(2, 4, 4, 4)]
    layer = dense(9, 6, use_bias=True)
    torch.nn.init.normal_(layer.bias)
    torch.testing.assert_close(linear_of_concat(parts, layer), layer(torch.cat(parts, dim=-1)))


ONEDNN_OPS = {"mkldnn._linear_pointwise", "mkldnn._convolution_pointwise"}


def ops_and_macs(run) -> tuple[set[str], int]:
    counter = FlopCounterMode(display=False)
    with counter:
        run()
    return set(map(str, counter.get_flop_counts()["Global"])), counter.get_total_flops()


def test_the_onednn_pass_keeps_the_weights_and_outputs_and_counts_the_same_macs(tiny_maxim):
    x = torch.rand(1, 3, 32, 64)
    fast = for_cpu_inference(copy.deepcopy(tiny_maxim))
    assert fast.state_dict().keys() == tiny_maxim.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(fast.state_dict().values(), tiny_maxim.state_dict().values()))
    swapped = {type(m).__name__ for m in fast.modules()} - {type(m).__name__ for m in tiny_maxim.modules()}
    assert swapped == {"OneDnnLinear", "OneDnnDenseGELU", "OneDnnConv1x1", "OneDnnConv", "OneDnnTokenDense"}
    with torch.no_grad():
        plain_ops, plain_macs = ops_and_macs(lambda: tiny_maxim(x))
        fast_ops, fast_macs = ops_and_macs(lambda: fast(x))
        plain, fused = tiny_maxim(x), fast(x)
    if torch.backends.mkldnn.is_available():  # every x86-64 and aarch64 Linux build of torch
        assert fast_ops >= ONEDNN_OPS
    assert not plain_ops & ONEDNN_OPS
    assert fast_macs == plain_macs > 0
    for stage_f, stage_p in zip(fused, plain):
        for f, p in zip(stage_f, stage_p):
            torch.testing.assert_close(f, p, rtol=1e-5, atol=1e-5)


def test_the_onednn_pass_leaves_training_to_the_plain_ops_with_the_same_gradients(tiny_maxim):
    x = torch.rand(1, 3, 32, 64)
    fast = for_cpu_inference(copy.deepcopy(tiny_maxim))
    grads = []
    for model in (tiny_maxim, fast):
        model.zero_grad()
        ops, _ = ops_and_macs(lambda model=model: sum(o.mean() for o in model(x)[-1]).backward())
        assert not ops & ONEDNN_OPS
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=0, atol=0, msg=name)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
def test_the_onednn_kernels_stay_out_of_autocast_other_dtypes_and_traces(tiny_maxim):
    # Where they are not exactly valid or not wanted the plain ops run: bfloat16 autocast,
    # oneDNN switched off, float64, and TorchScript/ONNX tracing (exportable ops only).
    x = torch.rand(1, 3, 32, 64)
    fast = for_cpu_inference(tiny_maxim)

    def ops(run) -> set[str]:
        with torch.no_grad():
            return ops_and_macs(run)[0]

    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not ops(lambda: fast(x)) & ONEDNN_OPS
    with torch.backends.mkldnn.flags(enabled=False):
        assert not ops(lambda: fast(x)) & ONEDNN_OPS
    assert not ops(lambda: fast.double()(x.double())) & ONEDNN_OPS
    fast.float()
    with torch.no_grad():
        graph = str(torch.jit.trace(PaddedRestorer(fast), x, check_trace=False).inlined_graph)
    assert "aten::linear" in graph and "mkldnn" not in graph


def test_activation_checkpointing_lowers_peak_memory_and_keeps_outputs_and_gradients():
    torch.manual_seed(0)
    plain = MAXIM(**{**TINY_MAXIM, "channels_reduction": 1})
    checkpointed = MAXIM(**{**TINY_MAXIM, "channels_reduction": 1, "activation_checkpointing": True})
    checkpointed.load_state_dict(plain.state_dict(), strict=True)
    assert checkpointed.config.activation_checkpointing is True
    assert plain.config.activation_checkpointing is False
    x = torch.rand(1, 3, 64, 128)
    results = []
    for model in (plain, checkpointed):
        with TensorMemory() as memory:  # every tensor of the pass, backward and recomputation included
            outputs = model(x)
            sum(o.square().mean() for stage in outputs for o in stage).backward()
        results.append((outputs, {n: p.grad for n, p in model.named_parameters()}, memory.peak_bytes))
    (out_a, grads_a, peak_a), (out_b, grads_b, peak_b) = results
    # measured: 121 MiB without, 26 MiB with (the stored block activations are the bulk)
    assert peak_b < 0.3 * peak_a
    for stage_a, stage_b in zip(out_a, out_b):
        for a, b in zip(stage_a, stage_b):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=0, atol=0, msg=name)


def test_the_model_compiles_as_one_graph():
    model = MAXIM(**SMALL_MAXIM).eval()
    with torch.no_grad():
        explanation = torch._dynamo.explain(model)(torch.rand(1, 3, 32, 64))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_channels_last_input_gives_the_same_output(tiny_maxim):
    x = torch.rand(1, 3, 32, 64)
    with torch.no_grad():
        plain = tiny_maxim(x)[-1][-1]
        channels_last = tiny_maxim(x.contiguous(memory_format=torch.channels_last))[-1][-1]
    assert torch.equal(plain, channels_last)


def test_bfloat16_autocast_runs_and_stays_close_to_float32(tiny_maxim):
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        reference = tiny_maxim(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = tiny_maxim(x)
    # bfloat16 keeps 8 significant bits (0.4% per rounding); through the whole
    # network the outputs stay within a few percent of float32.
    for stage_ref, stage_low in zip(reference, low):
        for ref, out in zip(stage_ref, stage_low):
            error = (out.float() - ref).abs()
            assert torch.isfinite(out).all()
            assert error.mean() <= 0.03 * ref.abs().mean()
            assert error.max() <= 0.05 * ref.abs().max()
