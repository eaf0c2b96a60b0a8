"""The digits-CNN chip workload in PyTorch, beside ``simulate_chips`` (optional: ``.[bench]``).

Workload (as the design note's): the digits binary CNN, 100 chips x 10 MC samples x 360 images,
10 % weight bit-flips (each stored ±1 weight of the binary convs flips its sign with probability
0.1; the full-precision stem, shortcut and classifier are not faulted, as in the library).
Contenders, taking turns run by run:

* ``simulate_chips`` (one jitted call, chips through ``lax.map``);
* a hand-written torch loop: a same-shape torch CNN (stem, IR-Net blocks with ``sign`` inputs,
  inverted norm with per-example vector affine dropout, hardtanh, pooling, classifier) holding
  the JAX model's deployed weights; per chip it flips the binary weights in place, then runs the
  chip's MC samples folded into one batch under ``torch.no_grad``;
* the same loop over ``torch.compile(net)`` (inductor: the elementwise work fused into C++
  kernels), what a careful torch user tries next; its compile (about 20 s) is the warm-up;
* PyTorchFI: per chip, ``declare_weight_fi`` deep-copies the model and writes every flipped
  weight, then the same forward.

Each torch contender runs on its best thread count (1 or all CPUs, timed once each), set
before each of its runs.

The torch network has the JAX model's shapes and FLOPs; it is not checked to be bit-identical
(stride-2 "SAME" padding differs by a row and a column), which does not change its speed.
"""

from __future__ import annotations

import os
import time

import numpy as np

try:
    import torch
    import torch.nn.functional as F
    from pytorchfi.core import fault_injection
except ImportError:  # the optional extra is not installed
    torch = None

from experiments.benchmarks.common import compile_simulate, interleaved_medians
from experiments.benchmarks.models import build, inputs
from invnorm_jax.faults import Fault

RATE, EPS = 0.1, 1e-5
SIZES = {False: (100, 10, 360), True: (3, 2, 32)}  # quick -> (chips, samples, images)


def available() -> bool:
    return torch is not None


if torch is not None:

    class BinaryConv2d(torch.nn.Conv2d):
        """A conv holding ±1 codes times a per-channel scale (the faulted layers)."""

    class InvNorm(torch.nn.Module):
        """``normalize(gamma x + beta)`` per instance, vector affine dropout per example."""

        def __init__(self, scale, bias):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.as_tensor(np.array(scale)), requires_grad=False)
            self.bias = torch.nn.Parameter(torch.as_tensor(np.array(bias)), requires_grad=False)

        def forward(self, x):
            b = x.shape[0]
            keep_g = (torch.rand(b, 1) >= RATE).to(x.dtype)
            keep_b = (torch.rand(b, 1) >= RATE).to(x.dtype)
            g = keep_g * self.scale + (1 - keep_g)
            beta = keep_b * self.bias
            y = g[:, :, None, None] * x + beta[:, :, None, None]
            m = y.mean(dim=(1, 2, 3), keepdim=True)
            v = (y - m).square().mean(dim=(1, 2, 3), keepdim=True)
            return (y - m) * torch.rsqrt(v + EPS)

    def _conv(layer, cls):
        stride = layer.strides[0]
        if cls is BinaryConv2d:
            codes, scale = layer.deployed_weights()
            w = np.asarray(codes * scale)
        else:
            w = np.asarray(layer.kernel[...])
        kh, kw, cin, cout = w.shape
        conv = cls(cin, cout, (kh, kw), stride=stride, padding=kh // 2, bias=False)
        conv.weight.data = torch.as_tensor(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))
        conv.weight.requires_grad_(False)
        return conv

    def _site(site):
        return InvNorm(site.scale[...], site.bias[...])

    class TorchBlock(torch.nn.Module):
        def __init__(self, block):
            super().__init__()
            self.conv1, self.site1 = _conv(block.conv1, BinaryConv2d), _site(block.site1)
            self.conv2, self.site2 = _conv(block.conv2, BinaryConv2d), _site(block.site2)
            self.short = None
            if block.shortcut_conv is not None:
                self.short = torch.nn.Sequential(
                    _conv(block.shortcut_conv, torch.nn.Conv2d), _site(block.shortcut_site)
                )

        def forward(self, x):
            out = F.hardtanh(self.site1(self.conv1(torch.sign(x))) + (x if self.short is None else self.short(x)))
            return F.hardtanh(self.site2(self.conv2(torch.sign(out))) + out)

    class TorchCNN(torch.nn.Module):
        """The digits BinaryResNet in torch, NCHW, with the JAX model's weights."""

        def __init__(self, model):
            super().__init__()
            self.stem, self.stem_site = _conv(model.stem, torch.nn.Conv2d), _site(model.stem_site)
            self.blocks = torch.nn.Sequential(*[TorchBlock(b) for b in model.blocks])
            self.fc = torch.nn.Linear(*np.asarray(model.classifier.kernel[...]).shape)
            self.fc.weight.data = torch.as_tensor(np.asarray(model.classifier.kernel[...]).T.copy())
            self.fc.bias.data.zero_()

        def forward(self, x):
            h = F.hardtanh(self.stem_site(self.stem(x)))
            return self.fc(self.blocks(h).mean(dim=(2, 3)))


def build_torch(model):
    """The torch twin of the digits model."""
    return TorchCNN(model).eval()


def torch_loop(net, x, chips: int, samples: int):
    """The hand-written loop: flip each chip's binary weights in place, run its samples."""
    convs = [m for m in net.modules() if isinstance(m, BinaryConv2d)]
    clean = [c.weight.detach().clone() for c in convs]
    xs = x.repeat(samples, 1, 1, 1)

    def run():
        outs = []
        with torch.no_grad():
            for chip in range(chips):
                gen = torch.Generator().manual_seed(chip)
                for conv, w in zip(convs, clean):
                    flip = torch.rand(w.shape, generator=gen) < RATE
                    conv.weight.copy_(torch.where(flip, -w, w))
                outs.append(net(xs))
            for conv, w in zip(convs, clean):
                conv.weight.copy_(w)
        return outs

    return run


def pytorchfi_loop(net, x, chips: int, samples: int):
    """PyTorchFI: ``declare_weight_fi`` (a deep copy of the model) per chip, then the forward."""
    xs = x.repeat(samples, 1, 1, 1)
    pfi = fault_injection(net, xs.shape[0], input_shape=list(x.shape[1:]), layer_types=[BinaryConv2d], use_cuda=False)
    convs = [m for m in net.modules() if isinstance(m, BinaryConv2d)]

    def run():
        outs = []
        with torch.no_grad():
            for chip in range(chips):
                rng = np.random.default_rng(chip)
                lay, k, c, h, w, val = [], [], [], [], [], []
                for i, conv in enumerate(convs):
                    weight = conv.weight.detach().numpy()
                    idx = np.nonzero(rng.random(weight.shape) < RATE)
                    lay += [i] * len(idx[0])
                    for dst, ix in zip((k, c, h, w), idx):
                        dst += ix.tolist()
                    val += (-weight[idx]).tolist()
                faulty = pfi.declare_weight_fi(layer_num=lay, k=k, dim1=c, dim2=h, dim3=w, value=val)
                outs.append(faulty(xs))
        return outs

    return run


def best_threads(run) -> int:
    """Set torch's thread count to the faster of 1 and all CPUs for ``run`` (timed once each).

    On a shared machine, torch's OpenMP threads can be 50x slower than one thread when the
    cores are oversubscribed; torch is given its best setting.
    """
    seconds = {}
    for threads in sorted({1, len(os.sched_getaffinity(0))}):
        torch.set_num_threads(threads)
        start = time.perf_counter()
        run()
        seconds[threads] = time.perf_counter() - start
    best = min(seconds, key=seconds.get)
    torch.set_num_threads(best)
    return best


def with_threads(run, threads: int):
    """``run`` on ``threads`` torch threads (contenders taking turns may want different counts)."""

    def threaded():
        torch.set_num_threads(threads)
        return run()

    return threaded


def compiled_loop(net, x, chips: int, samples: int):
    """:func:`torch_loop` over ``torch.compile(net)``, warmed up (compiled), or None where
    ``torch.compile`` does not run here (no C++ compiler, an unsupported platform)."""
    try:
        run = torch_loop(torch.compile(net), x, chips, samples)
        start = time.perf_counter()
        run()
        return run, time.perf_counter() - start
    except Exception as err:  # noqa: BLE001 - any failure of the optional compiler means "not here"
        print(f"torch.compile does not run here: {type(err).__name__}: {err}"[:300], flush=True)
        return None, float("nan")


def rows(quick: bool) -> list[dict]:
    """``simulate_chips`` vs the torch loop vs PyTorchFI, or one "skipped" row."""
    if not available():
        return [
            {
                "name": "torch / PyTorchFI comparison",
                "figures": {},
                "note": "skipped: install .[bench] (torch, pytorchfi)",
            }
        ]
    chips, samples, n = SIZES[quick]
    model, x = build("digits"), inputs("digits", n)
    sim, _ = compile_simulate(model, x, Fault("bit_flip", RATE), chips=chips, samples=samples, chunk=None)
    net = build_torch(model)
    xt = torch.as_tensor(np.asarray(x).transpose(0, 3, 1, 2).copy())
    eager = torch_loop(net, xt, chips, samples)
    threads = best_threads(eager)  # also the warm-up (PyTorchFI has nothing to warm up)
    runs = {"simulate": sim, "torch": with_threads(eager, threads)}
    compiled, compile_s = compiled_loop(build_torch(model), xt, chips, samples)
    if compiled is not None:
        compiled_threads = best_threads(compiled)
        runs["torch.compile"] = with_threads(compiled, compiled_threads)
    runs["pytorchfi"] = with_threads(pytorchfi_loop(net, xt, chips, samples), threads)
    # PyTorchFI runs once (minutes at full size), in turn with the first round of the others.
    first = interleaved_medians(runs, 1)
    again = {k: v for k, v in runs.items() if k != "pytorchfi"}
    seconds = {**interleaved_medians(again, 2), "pytorchfi": first["pytorchfi"]} if not quick else first
    total = chips * samples * n
    note = (
        f"{chips} chips x {samples} samples x {n} images, 10 % weight bit-flips, torch {torch.__version__} "
        f"on {threads} thread(s)"
    )
    rows = [
        {
            "name": "torch: simulate_chips vs hand-written torch loop",
            "figures": {
                "simulate img/s": total / seconds["simulate"],
                "torch img/s": total / seconds["torch"],
                "simulate / torch": seconds["torch"] / seconds["simulate"],
            },
            "note": note + "; target >= 2x",
        },
        {
            "name": "torch: simulate_chips vs PyTorchFI",
            "figures": {
                "simulate img/s": total / seconds["simulate"],
                "pytorchfi img/s": total / seconds["pytorchfi"],
                "simulate / pytorchfi": seconds["pytorchfi"] / seconds["simulate"],
            },
            "note": note + "; target >= 3x",
        },
    ]
    if compiled is None:
        rows.append(
            {
                "name": "torch: simulate_chips vs torch.compile loop",
                "figures": {},
                "note": "skipped: torch.compile does not run here",
            }
        )
    else:
        rows.append(
            {
                "name": "torch: simulate_chips vs torch.compile loop",
                "figures": {
                    "simulate img/s": total / seconds["simulate"],
                    "torch.compile img/s": total / seconds["torch.compile"],
                    "simulate / torch.compile": seconds["torch.compile"] / seconds["simulate"],
                },
                "note": f"{note.split(' on ')[0]} on {compiled_threads} thread(s), first call (compile) {compile_s:.0f} s; target > 1x",
            }
        )
    return rows
