"""IEL cost: training-step time and memory of the inverse evolution layers on the WBC setting.

    python benchmarks/bench_iel.py                         # CPU, U-Net 64/4, 112x112, batch 2 and 16
    python benchmarks/bench_iel.py --device cuda           # peak memory from torch.cuda.max_memory_allocated
    python benchmarks/bench_iel.py --batches 2 --types heat --repeats 5
    python benchmarks/bench_iel.py --quick                 # tiny smoke run (CI): width 8, 64x64, batch 2

Setting (research note §1.4, WBC): ``UNet(3, 3, width=64, depth=4)`` (31.03 M parameters) on 112x112
inputs, cross-entropy on ``IEL(logits)``, RMSprop lr 1e-5, one optimizer step per training step.

Compared, for ``steps`` in 0 (no IEL), 5, 20, 50 (dt = 0.1):

- heat: ``adjoint`` (:class:`ielcore.iel.HeatIEL`, a custom backward that applies ``(I - dt L^T)^N`` to the
  gradient and saves nothing) vs ``autograd``, the authors' plain loop
  ``z = z - dt * F.conv2d(z, L, padding=1, groups=C)`` differentiated by autograd;
- tv, mcf, perona_malik: ``plain`` autograd vs ``checkpoint`` (each step under
  ``torch.utils.checkpoint``: only each step's input is kept).

Columns: ``step ms`` median time of a whole training step (forward, IEL, loss, backward, optimizer);
``Δstep %`` its change against ``steps = 0`` (noisy: two medians subtracted); ``IEL ms`` median time of
the IEL's forward + backward alone on the logits, and ``IEL %`` that time as a share of the ``steps = 0``
step (the cleaner overhead figure); memory ``MiB``: on CPU the bytes of the distinct tensors autograd
saved for backward in the step (``torch.autograd.graph.saved_tensors_hooks``; parameters excluded),
on CUDA the step's peak allocation above what was allocated before it; ``extra MiB`` that figure minus
the ``steps = 0`` figure (the memory the IEL adds); ``IEL-only MiB`` the same measure for the IEL's
forward + backward alone, minus the no-IEL figure.  Configurations are interleaved within each repeat so
that a noisy machine slows them alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ielcore.iel import build_iel  # noqa: E402
from ielcore.models import build_model  # noqa: E402

NONLINEAR = ("tv", "mcf", "perona_malik")
MIB = 2**20


class AuthorsHeat(nn.Module):
    """The authors' heat IEL: ``steps`` depthwise convolutions with ``L`` (zero padding), plain autograd."""

    def __init__(self, dt: float, steps: int) -> None:
        super().__init__()
        self.dt, self.steps = dt, steps
        kernel = torch.tensor([[0.0, 0.25, 0.0], [0.25, -1.0, 0.25], [0.0, 0.25, 0.0]])
        self.register_buffer("kernel", kernel.reshape(1, 1, 3, 3))

    def forward(self, z: Tensor) -> Tensor:
        c = z.shape[1]
        weight = self.kernel.expand(c, 1, 3, 3)
        for _ in range(self.steps):
            z = z - self.dt * F.conv2d(z, weight, padding=1, groups=c)
        return z


@dataclass(frozen=True)
class Variant:
    """One IEL configuration: ``type`` and ``impl`` name it, ``steps`` = 0 is the no-IEL baseline."""

    type: str
    impl: str
    steps: int

    def build(self, dt: float) -> nn.Module:
        if self.steps == 0:
            return nn.Identity()
        if self.type == "heat" and self.impl == "autograd":
            return AuthorsHeat(dt, self.steps)
        kwargs = {"checkpoint": self.impl == "checkpoint"} if self.type in NONLINEAR else {}
        return build_iel(self.type, dt=dt, steps=self.steps, **kwargs)


def variants(types: list[str], steps: list[int]) -> list[Variant]:
    out = [Variant("none", "-", 0)] if 0 in steps else []
    for kind in types:
        impls = ("adjoint", "autograd") if kind == "heat" else ("plain", "checkpoint")
        out += [Variant(kind, impl, n) for n in steps if n > 0 for impl in impls]
    return out


class SavedTensorBytes:
    """Bytes of the distinct storages autograd saves for backward while active (parameters excluded)."""

    def __init__(self, exclude: set[int]) -> None:
        self.exclude = exclude
        self.storages: dict[int, int] = {}

    def _pack(self, t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in self.exclude:
            self.storages[ptr] = max(self.storages.get(ptr, 0), storage.nbytes())
        return t

    def hooks(self) -> torch.autograd.graph.saved_tensors_hooks:
        return torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    @property
    def nbytes(self) -> int:
        return sum(self.storages.values())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn: Callable[[], None], device: torch.device, exclude: set[int]) -> tuple[float, float]:
    """Run ``fn`` once: (seconds, memory bytes) with memory as described in the module docstring."""
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        return time.perf_counter() - t0, float(torch.cuda.max_memory_allocated(device) - before)
    counter = SavedTensorBytes(exclude)
    t0 = time.perf_counter()
    with counter.hooks():
        fn()
    return time.perf_counter() - t0, float(counter.nbytes)


@dataclass
class Row:
    batch: int
    variant: Variant
    step_s: float
    step_mem: float
    iel_s: float
    iel_mem: float


def bench_batch(args: argparse.Namespace, batch: int, vs: list[Variant], device: torch.device) -> list[Row]:
    torch.manual_seed(0)
    model = build_model("unet", 3, 3, width=args.width, depth=args.depth).to(device)
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-5, momentum=0.9, weight_decay=1e-8)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    x = torch.randn(batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, 3, (batch, args.size, args.size), device=device)
    layers = {v: v.build(args.dt).to(device) for v in vs}

    def train_step(iel: nn.Module) -> None:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(iel(model(x)), y)
        loss.backward()
        opt.step()

    logits = torch.randn(batch, 3, args.size, args.size, device=device)

    def iel_only(iel: nn.Module) -> None:
        z = logits.clone().requires_grad_(True)
        iel(z).square().mean().backward()

    step_t: dict[Variant, list[float]] = {v: [] for v in vs}
    step_m: dict[Variant, float] = {}
    iel_t: dict[Variant, list[float]] = {v: [] for v in vs}
    iel_m: dict[Variant, float] = {}
    for _ in range(args.warmup):  # warm-up (allocator, kernels, optimizer state)
        train_step(layers[vs[0]])
    for v in vs:
        iel_only(layers[v])
    for _ in range(args.repeats):
        for v in vs:
            t, m = measure(lambda v=v: train_step(layers[v]), device, params)  # type: ignore[misc]
            step_t[v].append(t)
            step_m[v] = m
            for _ in range(args.iel_repeats):
                t, m = measure(lambda v=v: iel_only(layers[v]), device, set())  # type: ignore[misc]
                iel_t[v].append(t)
                iel_m[v] = m
    return [
        Row(batch, v, statistics.median(step_t[v]), step_m[v], statistics.median(iel_t[v]), iel_m[v])
        for v in vs
    ]


def print_table(rows: list[Row], device: torch.device) -> None:
    mem = "saved MiB" if device.type == "cpu" else "peak MiB"
    head = (
        f"{'batch':>5s}  {'IEL':13s}{'impl':11s}{'steps':>5s}{'step ms':>10s}{'Δstep %':>9s}{'IEL ms':>9s}"
        f"{'IEL %':>7s}{mem:>11s}{'extra MiB':>11s}{'IEL-only MiB':>14s}"
    )
    print(head)
    base = {r.batch: r for r in rows if r.variant.steps == 0}
    for r in rows:
        b = base.get(r.batch)
        v = r.variant
        if b is None or v.steps == 0:
            delta = pct = extra = "-"
        else:
            delta = f"{100 * (r.step_s - b.step_s) / b.step_s:+.1f}"
            pct = f"{100 * r.iel_s / b.step_s:.1f}"
            extra = f"{(r.step_mem - b.step_mem) / MIB:.1f}"
        iel_only = (r.iel_mem - b.iel_mem) / MIB if b is not None else r.iel_mem / MIB
        print(
            f"{r.batch:5d}  {v.type:13s}{v.impl:11s}{v.steps:5d}{1000 * r.step_s:10.1f}{delta:>9s}"
            f"{1000 * r.iel_s:9.2f}{pct:>7s}{r.step_mem / MIB:11.1f}{extra:>11s}{iel_only:14.2f}"
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--dt", type=float, default=0.1)
    ap.add_argument("--batches", default="2,16")
    ap.add_argument("--steps", default="0,5,20,50")
    ap.add_argument("--types", default="heat,tv,mcf,perona_malik")
    ap.add_argument("--repeats", type=int, default=3, help="timed training steps per configuration")
    ap.add_argument("--iel-repeats", type=int, default=5, help="timed IEL-only runs per training step")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    ap.add_argument(
        "--quick", action="store_true", help="tiny smoke run: width 8, 64x64, batch 2, steps 0/5/20"
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.width, args.size, args.batches, args.steps, args.types = 8, 64, "2", "0,5,20", "heat,tv"
        args.repeats, args.iel_repeats, args.warmup = 1, 1, 1
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = [int(s) for s in args.steps.split(",")]
    types = [t for t in args.types.split(",") if t]
    vs = variants(types, steps)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()} CPU cores"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"U-Net width {args.width} depth {args.depth}, {args.size}x{args.size}, dt {args.dt}; {name}, "
        f"{torch.get_num_threads()} threads, load average {load}; median of {args.repeats} steps"
    )
    rows: list[Row] = []
    for batch in (int(b) for b in args.batches.split(",")):
        t0 = time.perf_counter()
        rows += bench_batch(args, batch, vs, device)
        print(f"  batch {batch}: {time.perf_counter() - t0:.0f} s", flush=True)
    print_table(rows, device)


if __name__ == "__main__":
    main()
