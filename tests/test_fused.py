"""Fused multi-trial training: each member of a fused group is the run train_trial makes of its config.

Equality is tested in float64 (``torch.set_default_dtype``): there the fused and separate runs agree to
the last bit (the grouped convolutions of the fused forward sum in another order, which in float32 moves
logits by ~1e-6 and can flip an argmax pixel).  In float32 the losses agree within 1e-4.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from ielcore.errors import IELError
from ielcore.fused import StackedModels, fusion_groups, fusion_key, train_fused
from ielcore.result import TrialResult
from ielcore.spec import TrialConfig
from ielcore.train import load_checkpoint, train_trial

TINY: dict[str, Any] = {
    "device": "cpu",
    "epochs": 2,
    "batch_size": 4,
    "data": {"type": "cells", "num_images": 12, "size": 32},
    "model": {"type": "unet", "width": 4, "depth": 2},
    "optimizer": {"type": "adam", "lr": 3e-3},
    "artifacts": {"checkpoint": True, "prediction_grid": False},
}
MEMBERS = [
    {"seed": 0, "noise.type": "block", "noise.rate": 0.1, "iel.type": "heat", "iel.steps": 5},
    {
        "seed": 1,
        "noise.type": "block",
        "noise.rate": 0.3,
        "iel.type": "heat",
        "iel.steps": 10,
        "optimizer.lr": 1e-3,
    },
    {"seed": 2, "noise.type": "pixel", "noise.rate": 0.2, "optimizer.lr": 5e-3},
]


def tiny(**overrides: Any) -> TrialConfig:
    return TrialConfig.from_dict(TINY).replace(overrides)


@pytest.fixture
def float64() -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


class StopAfter:
    def __init__(self, epoch: int) -> None:
        self.epoch, self.seen = epoch, []  # type: ignore[var-annotated]

    def report(self, epoch: int, metrics: Any) -> bool:
        self.seen.append(epoch)
        return epoch < self.epoch


def assert_same_run(fused: TrialResult, separate: TrialResult, tol: float = 1e-9) -> None:
    assert (fused.status, fused.epochs_run, fused.failed_epoch) == (
        separate.status,
        separate.epochs_run,
        separate.failed_epoch,
    )
    assert fused.trial_hash == separate.trial_hash and fused.config == separate.config
    assert fused.error == separate.error
    assert len(fused.history) == len(separate.history)
    for a, b in zip(fused.history, separate.history):
        assert a.keys() == b.keys()
        assert all(abs(a[k] - b[k]) <= tol for k in a), (a, b)
    assert fused.final_metrics == pytest.approx(separate.final_metrics, abs=tol)


def test_fused_group_equals_separate_runs_float64(float64: None) -> None:
    cfgs = [tiny(**m) for m in MEMBERS]
    fused = train_fused(cfgs)
    for f, cfg in zip(fused, cfgs):
        assert_same_run(f, train_trial(cfg))
        assert f.timings["fused_members"] == 3.0 and f.timings["train_s"] > 0
    assert len({f.final_metrics["train_loss"] for f in fused}) == 3  # the members really differ


@pytest.mark.parametrize(
    "shared",
    [
        {"optimizer.type": "sgd", "schedule.type": "cosine", "label_smoothing.steps": 2},
        {"optimizer.type": "adamw", "schedule.type": "plateau", "schedule.patience": 0},
        {"optimizer.type": "rmsprop", "schedule.type": "step", "schedule.step_size": 1},
    ],
)
def test_optimizers_and_schedules_stay_per_member(shared: dict[str, Any], float64: None) -> None:
    members = [
        {"seed": 3, "optimizer.lr": 2e-3, "optimizer.weight_decay": 0.1, "optimizer.momentum": 0.5},
        {
            "seed": 4,
            "optimizer.lr": 8e-3,
            "noise.type": "pixel",
            "noise.rate": 0.3,
            "noise.resample_each_epoch": True,
        },
    ]
    cfgs = [tiny(**shared, **m) for m in members]
    fused = train_fused(cfgs)
    for f, cfg in zip(fused, cfgs):
        assert_same_run(f, train_trial(cfg))
    assert fused[0].history[-1]["lr"] != fused[1].history[-1]["lr"]


def test_fused_group_close_to_separate_runs_float32() -> None:
    cfgs = [tiny(**m) for m in MEMBERS]
    for f, s in zip(train_fused(cfgs), (train_trial(c) for c in cfgs)):
        assert f.status == s.status == "complete" and f.epochs_run == s.epochs_run == 2
        for a, b in zip(f.history, s.history):
            assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-4)
            assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-4)
            # argmax metrics: a pixel may flip (1 pixel = 1/3072 of pixel_acc)
            assert a["pixel_acc"] == pytest.approx(b["pixel_acc"], abs=0.01)
            assert a["dice"] == pytest.approx(b["dice"], abs=0.01)


def test_fusion_key_separates_what_must_be_shared() -> None:
    base = tiny()
    key = fusion_key(base)
    assert key is not None and fusion_key(base.to_dict()) == key
    same = {
        "seed": 7,
        "noise.type": "block",
        "noise.rate": 0.4,
        "iel.type": "tv",
        "optimizer.lr": 0.1,
        "optimizer.weight_decay": 0.01,
        "optimizer.momentum": 0.5,
        "data.seed": 3,
        "artifacts.checkpoint": False,
    }
    for path, value in same.items():
        assert fusion_key(base.replace({path: value})) == key, path
    different = {
        "model.width": 8,
        "model.type": "parabolic",
        "data.size": 48,
        "data.num_images": 16,
        "data.val_fraction": 0.5,
        "data.type": "blobs",
        "epochs": 3,
        "batch_size": 2,
        "amp": True,
        "optimizer.type": "sgd",
        "schedule.type": "cosine",
        "loss.type": "ce_dice",
        "label_smoothing.steps": 2,
    }
    keys = {path: fusion_key(base.replace({path: value})) for path, value in different.items()}
    assert key not in keys.values() and len(set(keys.values())) == len(keys)
    assert fusion_key(TrialConfig.from_dict({"kind": "noop"})) is None


def test_fusion_groups_and_mismatch_errors() -> None:
    a, b, noop = tiny(), tiny(**{"model.width": 8}), TrialConfig.from_dict({"kind": "noop"})
    specs = [a, b, a.replace({"seed": 1}), noop, a.replace({"seed": 2}), b.replace({"seed": 3})]
    assert fusion_groups(specs) == [[0, 2, 4], [1, 5], [3]]
    assert fusion_groups(specs, max_members=2) == [[0, 2], [1, 5], [3], [4]]
    with pytest.raises(IELError, match="model.width"):
        train_fused([a, b])
    with pytest.raises(IELError, match="noop"):
        train_fused([noop])
    with pytest.raises(IELError, match="reporters"):
        train_fused([a], reporters=[None, None])


def test_pruned_member_stops_while_others_finish(float64: None) -> None:
    cfgs = [tiny(**m) for m in MEMBERS]
    stop = StopAfter(1)
    fused = train_fused(cfgs, [None, stop, None])
    assert [f.status for f in fused] == ["complete", "pruned", "complete"]
    assert [f.epochs_run for f in fused] == [2, 1, 2] and stop.seen == [1]
    separate = [train_trial(cfgs[0]), train_trial(cfgs[1], StopAfter(1)), train_trial(cfgs[2])]
    for f, s in zip(fused, separate):
        assert_same_run(f, s)


def test_diverging_member_is_isolated(float64: None) -> None:
    # Adam with lr 1e200 overflows the float32 logits of the loss in epoch 1
    cfgs = [tiny(**MEMBERS[0]), tiny(**{**MEMBERS[1], "optimizer.lr": 1e200}), tiny(**MEMBERS[2])]
    fused = train_fused(cfgs)
    assert [f.status for f in fused] == ["complete", "diverged", "complete"]
    assert fused[1].failed_epoch == 1 and "non-finite" in (fused[1].error or "")
    for f, cfg in zip(fused, cfgs):
        assert_same_run(f, train_trial(cfg))  # no NaN reached the healthy members


@pytest.mark.parametrize("model_type", ["parabolic", "hamiltonian", "second_order"])
def test_batchnorm_models_fuse_with_per_member_running_stats(model_type: str, float64: None) -> None:
    model = {"model.type": model_type, "model.width": 4, "model.units": 1, "model.steps_per_unit": 1}
    cfgs = [tiny(epochs=1, **model, **MEMBERS[0]), tiny(epochs=1, **model, **MEMBERS[2])]
    for f, cfg in zip(train_fused(cfgs), cfgs):
        assert_same_run(f, train_trial(cfg))


def test_member_artifacts_hold_their_own_weights(tmp_path: Path, float64: None) -> None:
    cfgs = [tiny(epochs=1, **m) for m in MEMBERS[:2]]
    dirs = [str(tmp_path / "a"), str(tmp_path / "b")]
    fused = train_fused(cfgs, out_dirs=dirs)
    train_trial(cfgs[1], out_dir=str(tmp_path / "separate"))
    model, ckpt = load_checkpoint(str(tmp_path / "b" / "checkpoint.pt"))
    reference, _ = load_checkpoint(str(tmp_path / "separate" / "checkpoint.pt"))
    assert ckpt["trial_hash"] == fused[1].trial_hash == cfgs[1].identity
    assert fused[1].artifacts["checkpoint"] == str(tmp_path / "b" / "checkpoint.pt")
    for (name, t), r in zip(ckpt["state_dict"].items(), reference.state_dict().values()):
        assert torch.equal(t, r), name
        assert t.untyped_storage().nbytes() == t.numel() * t.element_size()  # not the stacked storage
    assert model is not None


def test_stacked_models_match_members_and_shrink() -> None:
    torch.manual_seed(0)
    models = [
        torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.BatchNorm2d(3)) for _ in range(3)
    ]
    alone = copy.deepcopy(models)
    stack = StackedModels(models)
    x = torch.randn(3, 2, 2, 5, 5)  # (M, B, Cin, H, W)
    out = stack(x)
    for m in range(3):
        assert torch.allclose(out[m], alone[m](x[m]), atol=1e-5)
        assert models[m][1].num_batches_tracked.item() == 1  # member buffers see the fused update
    with torch.no_grad():
        models[2][0].weight.add_(1.0)  # a member's parameter is a view of its stacked slice
    assert torch.equal(stack.params["0.weight"][2], models[2][0].weight)
    stack.remove([1])
    assert len(stack) == 2 and stack.params["0.weight"].shape[0] == 2
    assert torch.equal(stack.params["0.weight"][1], models[2][0].weight)
    assert models[1][0].weight.untyped_storage().nbytes() == models[1][0].weight.numel() * 4
