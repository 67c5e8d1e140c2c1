"""Faster formulations of the per-frame networks for CUDA: the same functions, computed differently.

Each rewrite keeps the model's outputs (up to float rounding) and is applied to an inference copy:

* BatchNorm folded into the convolution before it (eval-mode BN is an affine map per channel).
* 1×1 convolutions as matrix products, and narrow-output k×k convolutions as one wide matrix
  product to the k² taps followed by a shifted sum.
* Convolutions with channel counts that are not multiples of 8 (the dense-motion hourglass's
  110- and 142-channel volumes, its 22-channel mask head, 1- and 12-channel output heads) padded
  with zero weights to multiples of 8, so cuDNN can use tensor cores; the extra outputs are dropped.
* 3-D convolutions optionally computed as one 2-D convolution over the depth slices with the
  depth taps stacked as output channels, then summed along depth with shifts ("depth-folded"):
  narrow outputs such as the 7×7×7 mask head become wide GEMMs. :func:`autotune_convs` times both
  ways on the device and keeps the faster, per layer.
* SPADE: instance norm computed with layout-preserving reductions (channels-last stays
  channels-last; statistics in float32, as ``F.instance_norm`` keeps them), γ and β predicted by
  one convolution with the 1 of (1 + γ) folded into its bias, and the modulation applied by fused
  multiply-adds.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from vcam.models.blocks import SPADE, Decoder, DownBlock2d, DownBlock3d, SameBlock2d, SPADEResnetBlock, UpBlock2d, UpBlock3d
from vcam.models.warping import DenseMotionNetwork

ALIGN = 8

# Blocks whose forward applies ``norm`` directly to the output of ``conv`` (pre-activation residual
# blocks, which normalise *before* their convs, are deliberately absent).
CONV_THEN_NORM: tuple[tuple[type[nn.Module], str, str], ...] = (
    (SameBlock2d, "conv", "norm"),
    (DownBlock2d, "conv", "norm"),
    (UpBlock2d, "conv", "norm"),
    (DownBlock3d, "conv", "norm"),
    (UpBlock3d, "conv", "norm"),
    (Decoder, "conv", "norm"),
    (DenseMotionNetwork, "compress", "norm"),
)


def fold_batchnorm(network: nn.Module) -> None:
    """Fold every eval-mode BatchNorm that directly follows a convolution into that convolution."""
    for module in list(network.modules()):
        for kind, conv_name, norm_name in CONV_THEN_NORM:
            norm = getattr(module, norm_name, None)
            if isinstance(module, kind) and isinstance(norm, nn.modules.batchnorm._BatchNorm):
                conv = getattr(module, conv_name)
                conv.weight, conv.bias = fuse_conv_bn_weights(
                    conv.weight, conv.bias, norm.running_mean, norm.running_var, norm.eps, norm.weight, norm.bias
                )
                setattr(module, norm_name, nn.Identity())


def _aligned(channels: int) -> int:
    return -(-channels // ALIGN) * ALIGN


def _memory_format(dims: int) -> torch.memory_format:
    return torch.channels_last_3d if dims == 3 else torch.channels_last


class FastConv(nn.Module):
    """A 2-D or 3-D convolution (groups 1) with channels padded to multiples of 8 and, for 3-D
    stride-1 cubic kernels, a depth-folded alternative; ``mode`` picks "direct" or "folded"."""

    def __init__(self, conv: nn.Conv2d | nn.Conv3d) -> None:
        super().__init__()
        self.dims = conv.weight.dim() - 2
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        padded_in, padded_out = _aligned(conv.in_channels), _aligned(conv.out_channels)
        weight = conv.weight.new_zeros(padded_out, padded_in, *conv.kernel_size)
        weight[: self.out_channels, : self.in_channels] = conv.weight.detach()
        bias = conv.weight.new_zeros(padded_out)
        if conv.bias is not None:
            bias[: self.out_channels] = conv.bias.detach()
        memory_format = _memory_format(self.dims)
        self.weight = nn.Parameter(weight.contiguous(memory_format=memory_format), requires_grad=False)
        self.bias = nn.Parameter(bias, requires_grad=False)
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        k = conv.kernel_size[0]
        self.can_fold = (
            self.dims == 3 and conv.kernel_size == (k, k, k) and k % 2 == 1 and conv.stride == (1, 1, 1)
            and conv.padding == (k // 2,) * 3 and conv.dilation == (1, 1, 1)
        )
        self.mode = "direct"
        if self.can_fold:
            # (O, C, kd, kh, kw) → (kd·O, C, kh, kw): one 2-D output channel per (depth tap, output).
            folded = weight.permute(2, 0, 1, 3, 4).reshape(k * padded_out, padded_in, k, k)
            self.folded_weight = nn.Parameter(folded.contiguous(memory_format=torch.channels_last), requires_grad=False)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with zero channels appended up to the padded width, laid out channels-last."""
        padded = self.weight.shape[1]
        memory_format = _memory_format(self.dims)
        if x.shape[1] == padded:
            return x.contiguous(memory_format=memory_format)
        out = x.new_zeros((x.shape[0], padded, *x.shape[2:])).contiguous(memory_format=memory_format)
        out[:, : x.shape[1]] = x
        return out

    def _folded(self, x: torch.Tensor) -> torch.Tensor:
        b, c, d, h, w = x.shape
        k = self.weight.shape[2]
        half = k // 2
        out_channels = self.weight.shape[0]
        slices = x.permute(0, 2, 1, 3, 4).reshape(b * d, c, h, w)
        taps = F.conv2d(slices, self.folded_weight, None, padding=half)  # (b·d, k·O, h, w)
        taps = taps.permute(0, 2, 3, 1).reshape(b, d, h, w, k, out_channels)
        out = taps[:, :, :, :, half] + self.bias
        for tap in range(k):
            shift = tap - half
            if shift:
                # Output slice z reads input slice z + shift through depth tap ``tap``.
                lo, hi = max(0, -shift), min(d, d - shift)
                out[:, lo:hi] += taps[:, lo + shift : hi + shift, :, :, tap]
        return out.permute(0, 4, 1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._pad(x)
        if self.mode == "folded":
            y = self._folded(x)
        else:
            conv = F.conv3d if self.dims == 3 else F.conv2d
            y = conv(x, self.weight, self.bias, self.stride, self.padding, self.dilation)
        if y.shape[1] != self.out_channels:
            y = y[:, : self.out_channels].contiguous(memory_format=_memory_format(self.dims))
        return y


class PointwiseConv(nn.Module):
    """A 1×1 (or 1×1×1) convolution as one matrix product over the channels-last layout
    (cuDNN's 1×1 kernels ran at ≈ 5 TFLOP/s on the generator's 512→256 shortcut on an H100)."""

    def __init__(self, conv: nn.Conv2d | nn.Conv3d) -> None:
        super().__init__()
        self.weight = nn.Parameter(conv.weight.detach().flatten(1), requires_grad=False)
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach(), requires_grad=False)

    @staticmethod
    def applies_to(conv: nn.Module) -> bool:
        return (isinstance(conv, (nn.Conv2d, nn.Conv3d)) and conv.groups == 1 and set(conv.kernel_size) == {1}
                and set(conv.stride) == {1} and set(conv.padding) == {0})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.movedim(1, -1), self.weight, self.bias).movedim(-1, 1)


class TapConv(nn.Module):
    """A k×k "same" 2-D convolution with few outputs (the occlusion head's 1, the image head's 12)
    as one matrix product to every (tap, output) pair, then a sum of the k² shifted tap maps.

    A narrow output leaves the tensor cores idle in an implicit GEMM; k²·O outputs keep them busy.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        out_channels, in_channels, k, _ = conv.weight.shape
        self.k, self.out_channels = k, out_channels
        taps = conv.weight.detach().permute(2, 3, 0, 1).reshape(k * k * out_channels, in_channels)
        # Zero rows up to a multiple of 8 keep the product on aligned (tensor-core) kernels.
        taps = torch.cat([taps, taps.new_zeros(_aligned(len(taps)) - len(taps), in_channels)])
        self.weight = nn.Parameter(taps.contiguous(), requires_grad=False)
        bias = conv.bias.detach() if conv.bias is not None else conv.weight.new_zeros(out_channels)
        self.bias = nn.Parameter(bias, requires_grad=False)

    @staticmethod
    def applies_to(conv: nn.Module) -> bool:
        if not isinstance(conv, nn.Conv2d) or conv.groups != 1:
            return False
        k = conv.kernel_size[0]
        return (conv.kernel_size == (k, k) and k % 2 == 1 and conv.stride == (1, 1) and conv.padding == (k // 2, k // 2)
                and conv.dilation == (1, 1) and conv.out_channels <= 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        k, half = self.k, self.k // 2
        taps = F.linear(x.movedim(1, -1), self.weight)[..., : k * k * self.out_channels].reshape(b, h, w, k, k, self.out_channels)
        taps = F.pad(taps, (0, 0, 0, 0, 0, 0, half, half, half, half))
        # Output (y, x) gathers tap (dy, dx) computed at input (y + dy − half, x + dx − half).
        out = sum(taps[:, dy : dy + h, dx : dx + w, dy, dx] for dy in range(k) for dx in range(k))
        return (out + self.bias).movedim(-1, 1)


def use_fast_convs(network: nn.Module) -> None:
    """Replace convolutions that gain from a rewrite: 1×1 → :class:`PointwiseConv`, narrow-output
    2-D → :class:`TapConv`, unaligned channels or 3-D → :class:`FastConv`."""
    for module in list(network.modules()):
        for name, child in list(module.named_children()):
            if not isinstance(child, (nn.Conv2d, nn.Conv3d)) or child.groups != 1:
                continue
            if PointwiseConv.applies_to(child):
                setattr(module, name, PointwiseConv(child))
            elif TapConv.applies_to(child):
                setattr(module, name, TapConv(child))
            elif child.in_channels % ALIGN or child.out_channels % ALIGN or isinstance(child, nn.Conv3d):
                setattr(module, name, FastConv(child))


class FusedSPADE(nn.Module):
    """:class:`SPADE` computed channels-last-friendly: x̂·(1 + γ) + β with one γ/β convolution."""

    def __init__(self, spade: SPADE) -> None:
        super().__init__()
        self.mlp_shared = spade.mlp_shared
        gamma, beta = spade.mlp_gamma, spade.mlp_beta
        self.channels = gamma.out_channels
        self.eps = spade.param_free_norm.eps
        self.scale_shift = nn.Conv2d(gamma.in_channels, 2 * self.channels, gamma.kernel_size, padding=gamma.padding)
        with torch.no_grad():
            self.scale_shift.weight.copy_(torch.cat([gamma.weight, beta.weight]))
            self.scale_shift.bias.copy_(torch.cat([gamma.bias + 1, beta.bias]))
        self.scale_shift.to(gamma.weight.device).requires_grad_(False)

    def forward(self, x: torch.Tensor, segmap: torch.Tensor) -> torch.Tensor:
        segmap = F.interpolate(segmap, size=x.shape[2:], mode="nearest")
        scale, shift = self.scale_shift(self.mlp_shared(segmap)).split(self.channels, dim=1)
        # Statistics in float32: generator activations reach thousands, so a channel's variance can
        # exceed fp16's 65504 (→ inf → the channel normalised to zero). Mean and 1/σ fit fp16 again.
        var, mean = torch.var_mean(x.float(), dim=(2, 3), keepdim=True, correction=0)
        normalized = (x - mean.to(x.dtype)).mul_(torch.rsqrt(var + self.eps).to(x.dtype))
        return torch.addcmul(shift, normalized, scale)


def use_fused_spade(network: nn.Module) -> None:
    for block in network.modules():
        if isinstance(block, SPADEResnetBlock):
            for name in ("norm_0", "norm_1", "norm_s"):
                spade = getattr(block, name, None)
                if isinstance(spade, SPADE):
                    setattr(block, name, FusedSPADE(spade))


def speed_up(network: nn.Module) -> None:
    """All the rewrites above, in place (BN folding first, while weights are still float32)."""
    fold_batchnorm(network)
    use_fused_spade(network)
    use_fast_convs(network)


def median_ms(run: Callable[[], object], cuda: bool, repeats: int = 10) -> float:
    """Median time of ``run``: CUDA events on the GPU, the wall clock on the CPU."""
    for _ in range(3):
        run()
    times = []
    for _ in range(repeats):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            began = time.perf_counter()
            run()
            times.append((time.perf_counter() - began) * 1e3)
    return statistics.median(times)


def module_inputs(modules: dict[str, nn.Module], run: Callable[[], object]) -> dict[str, tuple[object, ...]]:
    """Copies of the positional arguments ``run`` first passes each of ``modules`` (by name)."""
    inputs: dict[str, tuple[object, ...]] = {}

    def keep(name: str) -> Callable[[nn.Module, tuple[object, ...]], None]:
        def hook(module: nn.Module, args: tuple[object, ...]) -> None:
            inputs.setdefault(name, tuple(a.detach().clone() if isinstance(a, torch.Tensor) else a for a in args))

        return hook

    hooks = [module.register_forward_pre_hook(keep(name)) for name, module in modules.items()]
    try:
        run()
    finally:
        for hook in hooks:
            hook.remove()
    return inputs


def layer_inputs(layers: dict[str, nn.Module], run: Callable[[], object]) -> dict[str, torch.Tensor]:
    """The first input ``run`` feeds each of ``layers`` (by name), in the layer's weight dtype:
    under autocast that is the dtype the layer really runs in."""
    return {name: args[0].to(layers[name].weight.dtype) for name, args in module_inputs(layers, run).items()}  # type: ignore[union-attr]


def foldable_convs(network: nn.Module) -> dict[str, FastConv]:
    return {name: m for name, m in network.named_modules() if isinstance(m, FastConv) and m.can_fold}


def conv_modes(network: nn.Module) -> dict[str, str]:
    """The form ("direct" or "folded") each foldable :class:`FastConv` of ``network`` runs in."""
    return {name: conv.mode for name, conv in foldable_convs(network).items()}


def set_conv_modes(network: nn.Module, modes: dict[str, str]) -> bool:
    """Apply forms saved by :func:`conv_modes`; False (nothing changed) when they name other layers."""
    convs = foldable_convs(network)
    if set(modes) != set(convs) or not set(modes.values()) <= {"direct", "folded"}:
        return False
    for name, conv in convs.items():
        conv.mode = modes[name]
    return True


def autotune_convs(network: nn.Module, run: Callable[[], object]) -> dict[str, dict[str, float]]:
    """Time each foldable :class:`FastConv` both ways on the inputs ``run`` feeds it; keep the faster.

    Returns the timings (ms) per layer name. Call under ``torch.no_grad()``.
    """
    convs = foldable_convs(network)
    inputs = layer_inputs(convs, run)
    timings = {}
    for name, conv in convs.items():
        x = inputs[name]
        timings[name] = {}
        for mode in ("direct", "folded"):
            conv.mode = mode
            timings[name][mode] = median_ms(functools.partial(conv, x), x.is_cuda)
        conv.mode = min(timings[name], key=timings[name].__getitem__)
    return timings
