"""Fused multi-trial training: M configurations of one architecture trained together as one model.

Trials of one ablation cell usually share the network and differ only in seed, label noise, IEL and
learning rate.  Small networks leave a device (or the Python interpreter) mostly idle, so
:func:`train_fused` trains such a group *horizontally fused*:

    params    θ[m] for member m = 0..M-1, stacked along a leading member dimension
              (``torch.func.stack_module_state``): every weight ``(M, *shape)``
    forward   z[m] = f(θ[m], x[m]) for all m at once: ``vmap(functional_call)`` over the member
              dimension; convolutions become grouped convolutions with M groups
    loss      L = Σ_{m healthy} loss_m(IEL_m(z[m]), y[m]);  ∂L/∂θ[m] = ∂loss_m/∂θ[m]
    step      member m's own torch optimizer steps θ[m] in place

Each member is exactly the run :func:`ielcore.train.train_trial` would make of its configuration: the
same :class:`~ielcore.train.TrialRun` builds its data, labels, IEL, loss, initial weights
(``torch.manual_seed(seed)`` then ``build_model``), optimizer and schedule, and keeps its own data order,
label noise, learning rate and metrics.  The member's parameters become views of its slice of the
stacked tensors, so its optimizer is the plain torch optimizer of a separate run (same math, same state,
``ReduceLROnPlateau`` included).  The only numerical difference from separate runs is the summation
order inside the grouped convolutions (float32: about 1e-6 relative per forward pass).

Members leave the group independently: one whose reporter returns False ends ``pruned``, one whose loss
turns non-finite ends ``diverged`` in that epoch (its loss is left out of L before the backward pass, so
its NaNs reach no other member, and its optimizer does not step).  A member that leaves gets its own
storage back, its result and artifacts are written, and the stacked tensors shrink to the members left.
BatchNorm running statistics are per-member buffers stacked the same way, so every registered model fuses.

Use::

    for group in fusion_groups(configs, max_members=8):
        if len(group) == 1:
            results = [train_trial(configs[group[0]], reporters[group[0]])]
        else:
            results = train_fused([configs[i] for i in group], [reporters[i] for i in group])

Timings: the group's wall time of each training step (and each evaluation) is split evenly among the
members taking part, so the members' ``train_s``/``eval_s`` add up to the group's; ``total_s`` runs from
the member's setup to its end; ``fused_members`` is the group size.  In float64
(``torch.set_default_dtype``) fused and separate runs agree to the last bit on CPU (tests/test_fused.py).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from ielcore.errors import IELError
from ielcore.result import Reporter, TrialResult
from ielcore.spec import TrialConfig, config_hash
from ielcore.train import (
    TrialRun,
    autocast,
    score_batch,
    val_batches,
    val_metrics,
)

# Top-level fields and section keys in which fused members may differ; everything else must be equal.
PER_MEMBER_FIELDS = ("seed", "noise", "iel", "artifacts", "noop")
PER_MEMBER_KEYS: Mapping[str, tuple[str, ...]] = {
    "data": ("seed",),
    "optimizer": ("lr", "weight_decay", "momentum"),
}

T = TypeVar("T")


# ------------------------------------------------------------------------------------------ grouping
def _as_config(spec: TrialConfig | Mapping[str, Any]) -> TrialConfig:
    return spec if isinstance(spec, TrialConfig) else TrialConfig.from_dict(spec)


def _shared_part(cfg: TrialConfig) -> dict[str, Any]:
    """The part of a configuration that fused members must share (see :func:`fusion_key`)."""
    shared = cfg.to_dict()
    for name in PER_MEMBER_FIELDS:
        shared.pop(name)
    for section, keys in PER_MEMBER_KEYS.items():
        for key in keys:
            shared[section].pop(key, None)
    return shared


def fusion_key(spec: TrialConfig | Mapping[str, Any]) -> str | None:
    """A key such that configurations with equal keys can be trained together by :func:`train_fused`.

    Equal keys mean the same kind (``train``), model (type and parameters), data (every parameter but
    ``data.seed``), epochs, batch size, device, amp, optimizer type, schedule, loss and label smoothing.
    Members may differ in ``seed``, ``noise``, ``iel``, ``optimizer.lr``/``weight_decay``/``momentum``,
    ``data.seed`` and ``artifacts``.  ``None`` for configurations that cannot be fused (``kind: noop``).
    """
    cfg = _as_config(spec)
    if cfg.kind != "train":
        return None
    return config_hash(_shared_part(cfg))


def fusion_groups(
    specs: Sequence[TrialConfig | Mapping[str, Any]], max_members: int | None = None
) -> list[list[int]]:
    """Indices of ``specs`` grouped by :func:`fusion_key`, in order of first appearance.

    Groups hold at most ``max_members`` indices (``None``: no limit); an unfusable configuration is a
    group of its own.  ``[[0, 2], [1], [3]]`` means: fuse specs 0 and 2, run 1 and 3 one by one.
    """
    if max_members is not None and (isinstance(max_members, bool) or max_members < 1):
        raise IELError(f"max_members must be an integer >= 1 or None, but got max_members={max_members!r}")
    by_key: dict[str, list[int]] = {}
    groups: list[list[int]] = []
    for i, spec in enumerate(specs):
        key = fusion_key(spec)
        group = by_key.get(key) if key is not None else None
        if group is None or (max_members is not None and len(group) >= max_members):
            group = []
            groups.append(group)
            if key is not None:
                by_key[key] = group
        group.append(i)
    return groups


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    """Dotted path of the first place where two nested mappings differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else key)
    return path


def _check_fusable(cfgs: Sequence[TrialConfig]) -> None:
    if not cfgs:
        raise IELError("train_fused needs at least one configuration, but got none")
    for i, cfg in enumerate(cfgs):
        if fusion_key(cfg) is None:
            raise IELError(f"configuration {i} (kind {cfg.kind!r}) cannot be fused; run it with train_trial")
    first = _shared_part(cfgs[0])
    for i, cfg in enumerate(cfgs[1:], start=1):
        shared = _shared_part(cfg)
        if shared != first:
            path = _first_difference(first, shared)
            raise IELError(
                f"configurations 0 and {i} cannot be fused: they differ in {path!r}; fuse only "
                f"configurations with equal fusion_key() (group them with fusion_groups())"
            )


def _check_shapes(runs: Sequence[TrialRun]) -> None:
    """Members' datasets must stack: same image shape, classes and split sizes."""

    def shape(run: TrialRun) -> tuple[Any, ...]:
        d = run.data
        return tuple(d.images.shape), d.num_classes, len(d.train_idx), len(d.val_idx)

    for i, run in enumerate(runs[1:], start=1):
        if shape(run) != shape(runs[0]):
            raise IELError(
                f"configurations 0 and {i} cannot be fused: their datasets differ in shape "
                f"(images, classes, train size, val size) {shape(runs[0])} vs {shape(run)}; "
                "train them separately"
            )


def _per_member(values: Sequence[T] | None, count: int, name: str) -> list[T | None]:
    if values is None:
        return [None] * count
    if len(values) != count:
        raise IELError(f"{name} must have one entry per configuration ({count}), but got {len(values)}")
    return list(values)


# ----------------------------------------------------------------------------------- stacked models
class StackedModels:
    """M modules of one architecture run as one: ``(M, B, ...) -> (M, B, ...)``, member m on ``x[m]``.

    Parameters and buffers are stacked along a leading member dimension and the forward pass is
    ``vmap(functional_call)`` over it.  Member m's own parameters and buffers are views of slice m of
    the stacked tensors, so they always hold its current values: a torch optimizer over
    ``models[m].parameters()`` steps the stacked storage in place, and BatchNorm statistics updated in
    the fused forward pass appear in the member's buffers.
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        if not models:
            raise IELError("StackedModels needs at least one model")
        self.models = list(models)
        self.template = copy.deepcopy(self.models[0]).to("meta")
        self.params: dict[str, Tensor] = {}
        self.buffers: dict[str, Tensor] = {}
        self._restack()

    def __len__(self) -> int:
        return len(self.models)

    def _member_tensors(self, m: int) -> Iterable[tuple[str, Tensor]]:
        model = self.models[m]
        yield from model.named_parameters()
        yield from model.named_buffers()

    def _restack(self) -> None:
        self.params, self.buffers = torch.func.stack_module_state(self.models)  # type: ignore[arg-type]
        stacked = {**self.params, **self.buffers}
        for m in range(len(self.models)):
            for name, tensor in self._member_tensors(m):
                tensor.data = stacked[name].detach()[m]

    def _forward(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
        return torch.func.functional_call(self.template, (params, buffers), (x,))

    def __call__(self, x: Tensor) -> Tensor:
        """Member m's model applied to ``x[m]``: ``(M, B, Cin, H, W) -> (M, B, C, H, W)``."""
        return torch.func.vmap(self._forward)(self.params, self.buffers, x)

    def train(self, mode: bool = True) -> None:
        self.template.train(mode)
        for model in self.models:
            model.train(mode)

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None
        for model in self.models:
            model.zero_grad(set_to_none=True)

    def load_grads(self, members: Iterable[int]) -> None:
        """Point each listed member's ``.grad`` at its slice of the stacked gradients."""
        for m in members:
            for name, p in self.models[m].named_parameters():
                grad = self.params[name].grad
                p.grad = None if grad is None else grad[m]

    def remove(self, members: Iterable[int]) -> None:
        """Take the listed members out: they get their own storage back; the others are restacked."""
        gone = set(members)
        for m in gone:
            self.models[m].zero_grad(set_to_none=True)
            for _, tensor in self._member_tensors(m):
                tensor.data = tensor.data.clone()
        self.models = [model for m, model in enumerate(self.models) if m not in gone]
        if self.models:
            self._restack()
        else:
            self.params, self.buffers = {}, {}


# ----------------------------------------------------------------------------------------- the group
class _Group:
    """The members still training (``runs``, aligned with ``stack.models``) and the finished results."""

    def __init__(self, runs: Sequence[TrialRun], out_dirs: Sequence[str | None]) -> None:
        self.all_runs = list(runs)
        self.out_dirs = list(out_dirs)
        self.active = list(range(len(runs)))  # indices into all_runs
        self.results: list[TrialResult | None] = [None] * len(runs)
        self.stack = StackedModels([run.model for run in runs])

    @property
    def runs(self) -> list[TrialRun]:
        return [self.all_runs[i] for i in self.active]

    def share_time(self, key: str, seconds: float) -> None:
        """Split ``seconds`` of group wall time evenly among the active members' ``timings[key]``."""
        for run in self.runs:
            run.timings[key] += seconds / len(self.active)

    def retire(self, positions: Iterable[int]) -> None:
        """End the members at ``positions`` of :attr:`runs`: own storage, result, artifacts."""
        gone = sorted(set(positions))
        if not gone:
            return
        self.stack.remove(gone)
        for pos in gone:
            i = self.active[pos]
            run = self.all_runs[i]
            self.results[i] = run.result(self.out_dirs[i], fused_members=float(len(self.all_runs)))
        self.active = [i for pos, i in enumerate(self.active) if pos not in gone]


def _train_step(group: _Group, perms: Sequence[list[int]], start: int, epoch: int) -> list[int]:
    """One fused optimisation step; returns the positions of members whose loss was non-finite."""
    runs = group.runs
    device, amp = runs[0].device, runs[0].amp
    batches = [run.batch(perm, start) for run, perm in zip(runs, perms)]
    x = torch.stack([images for images, _ in batches]).to(device)  # (M, B, Cin, H, W)
    y = torch.stack([labels for _, labels in batches]).to(device)  # (M, B, H, W)
    with autocast(device, amp):
        logits = group.stack(x)  # (M, B, C, H, W)
    losses = [run.training_loss(logits[m], y[m]) for m, run in enumerate(runs)]
    values = torch.stack([loss.detach() for loss in losses]).tolist()
    healthy = [m for m, (run, value) in enumerate(zip(runs, values)) if run.check_loss(value, epoch)]
    if healthy:
        group.stack.zero_grad()
        torch.stack([losses[m] for m in healthy]).sum().backward()
        group.stack.load_grads(healthy)
        for m in healthy:
            runs[m].optimizer.step()
            runs[m].record_loss(values[m], y.shape[1])
    return [m for m in range(len(runs)) if m not in healthy]


def _evaluate(group: _Group) -> list[tuple[dict[str, float], Tensor]]:
    """Each active member's validation metrics and prediction, as :func:`ielcore.train.train_trial`'s."""
    runs = group.runs
    device, amp, batch_size = runs[0].device, runs[0].amp, runs[0].cfg.batch_size
    group.stack.train(False)
    batches = [val_batches(run.data, batch_size) for run in runs]
    scored: list[list[tuple[float, Tensor]]] = [[] for _ in runs]
    with torch.no_grad():
        for b in range(len(batches[0])):
            x = torch.stack([run.data.images[idx[b]] for run, idx in zip(runs, batches)]).to(device)
            y = torch.stack([run.data.clean[idx[b]] for run, idx in zip(runs, batches)]).to(device)
            with autocast(device, amp):
                logits = group.stack(x)  # (M, B, C, H, W)
            for m in range(len(runs)):
                scored[m].append(score_batch(logits[m], y[m]))
    return [val_metrics(s, run.data) for s, run in zip(scored, runs)]


def _train_epoch(group: _Group, epoch: int) -> None:
    cfg = group.runs[0].cfg
    perms = [run.begin_epoch(epoch) for run in group.runs]
    group.stack.train(True)
    for start in range(0, len(perms[0]), cfg.batch_size):
        t0 = time.perf_counter()
        diverged = _train_step(group, perms, start, epoch)
        group.share_time("train_s", time.perf_counter() - t0)
        if diverged:
            perms = [perm for pos, perm in enumerate(perms) if pos not in diverged]
            group.retire(diverged)
            if not group.active:
                return


def train_fused(
    specs: Sequence[TrialConfig | Mapping[str, Any]],
    reporters: Sequence[Reporter | None] | None = None,
    *,
    out_dirs: Sequence[str | None] | None = None,
    data_cache: MutableMapping[str, Any] | None = None,
) -> list[TrialResult]:
    """Train configurations with one :func:`fusion_key` together; one :class:`TrialResult` per spec, in order.

    Each member behaves as :func:`ielcore.train.train_trial` of its configuration: ``reporters[m]``
    (optional) is called after each of member m's epochs and returning False prunes that member alone;
    a non-finite loss ends it as ``diverged``; ``out_dirs[m]`` (optional) receives its artifacts as
    soon as it ends.  ``data_cache`` is shared by the members (a private one when ``None``).  Raises
    :class:`IELError` when the configurations cannot be fused (see :func:`fusion_key`) or their datasets
    differ in shape; an exception inside training (e.g. out of memory) ends the whole group.
    """
    cfgs = [_as_config(spec) for spec in specs]
    _check_fusable(cfgs)
    member_reporters = _per_member(reporters, len(cfgs), "reporters")
    member_dirs = _per_member(out_dirs, len(cfgs), "out_dirs")
    cache: MutableMapping[str, Any] = {} if data_cache is None else data_cache
    runs = [TrialRun.start(cfg, reporter, cache) for cfg, reporter in zip(cfgs, member_reporters)]
    _check_shapes(runs)
    group = _Group(runs, member_dirs)
    for epoch in range(1, cfgs[0].epochs + 1):
        _train_epoch(group, epoch)
        if not group.active:
            break
        t0 = time.perf_counter()
        evaluated = _evaluate(group)
        group.share_time("eval_s", time.perf_counter() - t0)
        stopped = []
        for pos, (run, (metrics, pred)) in enumerate(zip(group.runs, evaluated)):
            run.pred = pred
            if not run.end_epoch(epoch, metrics):
                stopped.append(pos)
        group.retire(stopped)
    group.retire(range(len(group.active)))
    return [result for result in group.results if result is not None]
