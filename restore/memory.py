"""Will one training step fit? A pre-flight estimate of its peak memory, and a refusal that says what to change.

A training step (forward, multi-stage loss, backward, Adam step) holds the
parameters, Adam's two moments, the gradients and the activations saved for
backward. Only the activations depend on the batch, and for MAXIM and its
mixers they grow linearly with batch x pixels: every mixer works on
fixed-size windows or grids, so a pixel costs the same at any patch size.

:func:`estimate_step_memory` therefore runs two real forward + backward passes
at the smallest patch the model takes, batches of one and two (two and four
when checkpointing), and counts the bytes of the tensors alive at each moment
(:class:`LiveTensorBytes`). The
difference is one image's activations; scaled to batch x pixels, plus what
does not scale, it is the step's tensor peak. On CPU the process also holds
what the C allocator keeps: freed blocks it has not returned, and holes
between long-lived blocks. :data:`CPU_ALLOCATOR_FACTOR` is that overhead,
measured with ``benchmarks/bench_memory.py`` (docs/performance.md, "Memory").
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import weakref
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from restore.errors import ConfigError

GB = 1e9
# Resident bytes per byte of the tensors' peak that a CPU training step adds, in
# the steady state (from the second step on, glibc holding what the first one
# freed). Measured with benchmarks/bench_memory.py at 128^2 x 8: 1.3 for the
# attention mixer (its large blocks are mmap'ed and go back to the kernel when
# freed), 1.5 for the mixing block, 1.65-1.8 for the gMLP MAXIMs (more blocks
# small enough for glibc's heap, whose holes stay resident). One factor in the
# middle keeps every preset within about 20% (docs/performance.md, "Memory").
CPU_ALLOCATOR_FACTOR = 1.55
# Checkpointed steps free and recompute one block's activations at a time between
# long-lived gradients, and glibc leaves the holes resident: the resident size they
# add is 3-5x their own tensor peak, depending on the model, but a steady share of
# what the same step without checkpointing holds in tensors (0.62 for MAXIM-3S,
# 0.66 for MAXIM-2S-attention at 128^2 x 8; docs/performance.md, "Memory"). So on
# the CPU a checkpointed step is estimated from the plain step's probe.
CPU_CHECKPOINTED_FACTOR = 0.64
# Adam(W) keeps two fp32 moments per parameter; its foreach step adds about one
# more parameter-sized temporary while the gradients are still alive.
ADAM_STATES, ADAM_STEP_TEMPORARIES = 2, 1
AUTOCAST = {
    "bf16-mixed": torch.bfloat16,
    "16-mixed": torch.float16,
    "bf16-true": torch.bfloat16,
    "16-true": torch.float16,
}


class LiveTensorBytes(TorchDispatchMode):
    """The peak bytes held by tensors created while it is active (``peak_bytes``).

    Every op's outputs are seen at dispatch, autograd's backward ops and a
    checkpoint's recomputation included; each storage counts once, from its
    creation until it is freed. Views and in-place results share an input's
    storage and add nothing. CPU has no allocator statistics like
    ``torch.cuda.max_memory_allocated``, and the process's resident size also
    holds the allocator's free lists and the libraries: this is the tensors' own
    share, comparable between allocators and machines.
    """

    def __init__(self):
        super().__init__()
        self.live: set[int] = set()
        self.bytes = self.peak_bytes = 0

    def _freed(self, key: int, nbytes: int) -> None:
        self.live.discard(key)
        self.bytes -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        given = {_storage_key(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for tensor in tree_leaves(out):
            if not isinstance(tensor, torch.Tensor) or tensor.device.type == "meta":
                continue
            storage = tensor.untyped_storage()
            key, nbytes = storage.data_ptr(), storage.nbytes()
            if nbytes and key not in self.live and key not in given:
                self.live.add(key)
                self.bytes += nbytes
                self.peak_bytes = max(self.peak_bytes, self.bytes)
                weakref.finalize(storage, self._freed, key, nbytes)
        return out


def _storage_key(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr() if tensor.device.type != "meta" else 0


@dataclass(frozen=True)
class MemoryEstimate:
    """One training step's estimated peak on ``device``, in bytes.

    ``needed`` is the process's (CPU) or this device's (CUDA) peak during the
    step, what it holds already included; ``available`` is what it could reach
    (what it holds plus what the system or device has free).
    """

    device: str
    needed: int
    available: int
    batch_size: int
    patch_size: tuple[int, int]
    activation_checkpointing: bool

    @property
    def fits(self) -> bool:
        return self.needed <= self.available


@dataclass(frozen=True)
class _StepModel:
    """Tensor bytes of a step as ``fixed + per_pixel * batch * H * W``, and what the process holds now."""

    fixed: float
    per_pixel: float
    optimizer_step: float
    held: int
    available: int
    allocator_factor: float


def _patch(patch_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(patch_size, int):
        return patch_size, patch_size
    h, w = patch_size
    return int(h), int(w)


def _precision_dtype(precision: str | int) -> torch.dtype | None:
    name = str(precision)
    if name in ("32", "32-true", "64", "64-true"):
        return None
    if name not in AUTOCAST:
        raise ConfigError(
            f"trainer.precision={precision} is not one of 32-true, bf16-mixed, 16-mixed, bf16-true, 16-true"
        )
    return AUTOCAST[name]


def _held_and_available(device: torch.device) -> tuple[int, int]:
    """(bytes this process holds now, bytes it could still get) on ``device``."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        reserved = torch.cuda.memory_reserved(device)
        return torch.cuda.memory_allocated(device), free + reserved - torch.cuda.memory_allocated(device)
    return _proc_kib("/proc/self/status", "VmRSS") * 1024, _proc_kib("/proc/meminfo", "MemAvailable") * 1024


def _proc_kib(path: str, field: str) -> int:
    with open(path) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{path} has no {field}")


def _checkpointing(model: nn.Module) -> bool | None:
    """The model's ``activation_checkpointing`` setting, None for a model without one."""
    return getattr(getattr(model, "config", None), "activation_checkpointing", None)


@contextlib.contextmanager
def _probing(model: nn.Module, checkpointing: bool):
    """Train mode and the checkpointing flag for the probe; the model's state, gradients and the RNG as they were."""
    was_training = model.training
    config = getattr(model, "config", None)  # MaximConfig is frozen: the probe swaps in a copy
    toggles = _checkpointing(model) is not None
    grads = {p: p.grad for p in model.parameters()}
    devices = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=devices):
        try:
            # The probe's ops are tiny (the smallest patch); across threads each op would
            # wait on a barrier, and on a busy machine on a descheduled thread: measured
            # 10x slower with 2 threads than with one on a loaded 2-core machine.
            torch.set_num_threads(1)
            model.train()
            if toggles:
                model.config = dataclasses.replace(config, activation_checkpointing=checkpointing)
            yield
        finally:
            torch.set_num_threads(threads)
            model.train(was_training)
            if toggles:
                model.config = config
            for p, g in grads.items():
                p.grad = g


def _probe_bytes(module, batch: int, patch: tuple[int, int], in_channels: int, dtype, device) -> int:
    """Peak tensor bytes of one forward + loss + backward at ``batch`` x ``patch``."""
    x = torch.rand(batch, in_channels, *patch, device=device)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    with LiveTensorBytes() as tracker:
        with autocast:
            outputs = module.model(x)
        last = tree_leaves(outputs)[-1]
        target = torch.rand(batch, last.shape[1], *patch, device=device)
        loss, _ = module.loss(outputs, target)
        loss.backward()
        del outputs, loss
    return tracker.peak_bytes


def _step_model(
    module, in_channels: int, precision, device: torch.device, checkpointing: bool, plain: _StepModel | None = None
) -> _StepModel:
    """The step's tensor bytes from two small probe passes. ``plain``: the same step without
    checkpointing, when already probed; on the CPU a checkpointed step reuses it."""
    if checkpointing and device.type == "cpu":  # see CPU_CHECKPOINTED_FACTOR
        plain = plain or _step_model(module, in_channels, precision, device, False)
        return dataclasses.replace(plain, allocator_factor=CPU_CHECKPOINTED_FACTOR)
    model = module.model
    probe = tuple(getattr(model, "size_multiple", (32, 32)))
    dtype = _precision_dtype(precision)
    # Checkpointed, a small batch's peak is the gradients and one block's recomputation,
    # not the saved block inputs (measured on MAXIM-3S at 64^2: 39, 41, 82 MB at batch
    # 1, 2, 4), so the line is drawn through batches 2 and 4 there.
    small = 2 if checkpointing else 1
    with _probing(model, checkpointing):
        one, two = (_probe_bytes(module, b, probe, in_channels, dtype, device) for b in (small, 2 * small))
    per_image = max(two - one, 0) / small
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    # The probe counts the gradients; Adam's moments exist from the first step on.
    fixed = max(one - small * per_image, 0) + ADAM_STATES * param_bytes
    # After backward the activations are gone; the Adam step holds gradients, moments and its temporaries.
    optimizer_step = (1 + ADAM_STATES + ADAM_STEP_TEMPORARIES) * param_bytes
    held, free = _held_and_available(device)
    factor = CPU_ALLOCATOR_FACTOR if device.type == "cpu" else 1.0
    return _StepModel(fixed, per_image / math.prod(probe), optimizer_step, held, free, factor)


def _needed(step: _StepModel, batch_size: int, patch: tuple[int, int]) -> int:
    tensors = max(step.fixed + step.per_pixel * batch_size * math.prod(patch), step.optimizer_step)
    return int(step.held + step.allocator_factor * tensors)


def _estimate(module, batch_size, patch_size, in_channels, precision, device, activation_checkpointing):
    device = torch.device(device)
    checkpointing = bool(_checkpointing(module.model) if activation_checkpointing is None else activation_checkpointing)
    step = _step_model(module, in_channels, precision, device, checkpointing)
    patch = _patch(patch_size)
    needed, available = _needed(step, batch_size, patch), step.held + step.available
    return step, MemoryEstimate(device.type, needed, available, batch_size, patch, checkpointing)


def estimate_step_memory(
    module,
    batch_size: int,
    patch_size: int | tuple[int, int],
    in_channels: int = 3,
    precision: str | int = "32-true",
    device: torch.device | str = "cpu",
    activation_checkpointing: bool | None = None,
) -> MemoryEstimate:
    """The peak of one training step of ``module`` (a :class:`restore.module.RestorationModule`:
    its ``.model`` and ``.loss``) at ``batch_size`` x ``patch_size`` on ``device``.

    ``precision`` is Lightning's ``trainer.precision``; ``activation_checkpointing``
    None takes the model's own flag. Runs two small real passes (a second or two
    at the presets' sizes on CPU) and leaves the model's weights, gradients,
    mode and the random state as they were.
    """
    return _estimate(module, batch_size, patch_size, in_channels, precision, device, activation_checkpointing)[1]


def check_step_memory(
    module,
    batch_size: int,
    patch_size: int | tuple[int, int],
    in_channels: int = 3,
    precision: str | int = "32-true",
    device: torch.device | str = "cpu",
    activation_checkpointing: bool | None = None,
) -> MemoryEstimate:
    """:func:`estimate_step_memory`, raising :class:`ConfigError` when the step will not fit.

    The message is one line: the estimate, what is available, and what
    ``data.batch_size``, ``data.patch_size`` and ``model.activation_checkpointing=true``
    would each need instead (the largest batch and patch that fit, or the smallest tried).
    """
    step, estimate = _estimate(module, batch_size, patch_size, in_channels, precision, device, activation_checkpointing)
    if estimate.fits:
        return estimate
    needed, available, patch = estimate.needed, estimate.available, estimate.patch_size
    options = [
        _smaller_batch(step, batch_size, patch, available),
        _smaller_patch(module.model, step, batch_size, patch, available),
    ]
    if _checkpointing(module.model) is not None and not estimate.activation_checkpointing:
        with_checkpoints = _step_model(module, in_channels, precision, torch.device(device), True, plain=step)
        options.append(
            f"model.activation_checkpointing=true needs ~{_gb(_needed(with_checkpoints, batch_size, patch))} GB"
        )
    raise ConfigError(
        f"one training step needs about {_gb(needed)} GB on {estimate.device} and {_gb(available)} GB are available "
        f"(data.batch_size={batch_size}, data.patch_size={_patch_text(patch)}): " + ", ".join(options)
    )


def _smaller_batch(step: _StepModel, batch_size: int, patch: tuple[int, int], available: int) -> str:
    batch = batch_size
    while batch > 1:
        batch //= 2
        if _needed(step, batch, patch) <= available:
            break
    return f"data.batch_size={batch} needs ~{_gb(_needed(step, batch, patch))} GB"


def _smaller_patch(model: nn.Module, step: _StepModel, batch_size: int, patch: tuple[int, int], available: int) -> str:
    mh, mw = getattr(model, "size_multiple", (1, 1))
    smaller = patch
    while smaller[0] // 2 % mh == 0 and smaller[1] // 2 % mw == 0 and min(smaller) // 2 > 0:
        smaller = (smaller[0] // 2, smaller[1] // 2)
        if _needed(step, batch_size, smaller) <= available:
            break
    return f"data.patch_size={_patch_text(smaller)} needs ~{_gb(_needed(step, batch_size, smaller))} GB"


def _patch_text(patch: tuple[int, int]) -> str:
    return str(patch[0]) if patch[0] == patch[1] else f"[{patch[0]},{patch[1]}]"


def _gb(nbytes: float) -> str:
    return f"{nbytes / GB:.1f}"
