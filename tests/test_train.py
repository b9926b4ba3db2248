"""The single-trial trainer: it learns, it is deterministic, the IEL shapes only the training loss."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import ielcore.iel
from ielcore.metrics import dice_per_image
from ielcore.spec import TrialConfig
from ielcore.train import load_checkpoint, train_trial
from orchestrator.cli import main

TINY: dict[str, Any] = {
    "device": "cpu",
    "epochs": 2,
    "batch_size": 4,
    "data": {"type": "cells", "num_images": 12, "size": 32},
    "model": {"type": "unet", "width": 4, "depth": 2},
    "optimizer": {"type": "adam", "lr": 3e-3},
}


def tiny(**overrides: Any) -> TrialConfig:
    return TrialConfig.from_dict(TINY).replace(overrides)


def test_learns_far_above_all_background() -> None:
    cfg = TrialConfig.from_dict(
        {
            **TINY,
            "epochs": 8,
            "batch_size": 8,
            "data": {"type": "cells", "num_images": 48, "size": 48},
            "model": {"type": "unet", "width": 8, "depth": 2},
        }
    )
    result = train_trial(cfg)
    assert result.status == "complete" and result.epochs_run == 8
    # Dice of predicting background everywhere, on the same validation images
    from ielcore.data import build_dataset, split_indices

    ds = build_dataset("cells", seed=0, num_images=48, size=48)
    _, val = split_indices(48, 0.25, 0)
    truth = ds.masks[val]
    background = dice_per_image(torch.zeros_like(truth), truth, ds.num_classes).mean().item()
    assert result.final_metrics["dice"] > background + 0.3, (result.final_metrics["dice"], background)


def test_same_seed_same_metrics_and_seed_matters() -> None:
    a = train_trial(tiny(**{"noise.type": "block", "noise.rate": 0.3, "iel.type": "heat"}))
    b = train_trial(tiny(**{"noise.type": "block", "noise.rate": 0.3, "iel.type": "heat"}))
    c = train_trial(tiny(**{"noise.type": "block", "noise.rate": 0.3, "iel.type": "heat", "seed": 1}))
    assert a.history == b.history
    assert a.trial_hash == b.trial_hash != c.trial_hash
    assert a.history != c.history


def test_iel_applies_to_training_batches_only(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    original = ielcore.iel.build_iel

    def counting(name: str, **params: Any) -> torch.nn.Module:
        module = original(name, **params)
        forward = module.forward

        def wrapped(z: torch.Tensor) -> torch.Tensor:
            calls["n"] += 1
            return forward(z)

        module.forward = wrapped  # type: ignore[method-assign]
        return module

    monkeypatch.setattr(ielcore.iel, "build_iel", counting)
    cfg = tiny(**{"iel.type": "heat"})
    train_trial(cfg)
    n_train = 12 - 3  # val_fraction 0.25 of 12 images
    batches_per_epoch = -(-n_train // cfg.batch_size)
    assert calls["n"] == cfg.epochs * batches_per_epoch


def test_reporter_stops_training() -> None:
    seen: list[int] = []

    class StopAt2:
        def report(self, epoch: int, metrics: Any) -> bool:
            seen.append(epoch)
            return epoch < 2

    result = train_trial(tiny(epochs=5), StopAt2())
    assert result.status == "pruned" and result.epochs_run == 2 and seen == [1, 2]


@pytest.mark.parametrize("kind", ["unet", "noop"])
def test_stop_after_the_last_epoch_is_complete(kind: str) -> None:
    """A stop that arrives with the last epoch's report saves nothing: the trial is complete, not pruned."""

    class AlwaysStop:
        def report(self, epoch: int, metrics: Any) -> bool:
            return False

    cfg = tiny(epochs=1) if kind == "unet" else {"kind": "noop", "epochs": 1}
    assert train_trial(cfg, AlwaysStop()).status == "complete"
    cfg2 = tiny(epochs=2) if kind == "unet" else {"kind": "noop", "epochs": 2}
    result = train_trial(cfg2, AlwaysStop())
    assert result.status == "pruned" and result.epochs_run == 1


def test_divergence_is_a_result_with_its_epoch() -> None:
    result = train_trial(tiny(**{"optimizer.lr": 1e12, "optimizer.type": "sgd", "epochs": 4}))
    assert result.status == "diverged"
    assert result.failed_epoch is not None and 1 <= result.failed_epoch <= 4
    assert "non-finite" in (result.error or "")


def test_artifacts_round_trip(tmp_path: Path) -> None:
    cfg = tiny(**{"noise.type": "block", "noise.rate": 0.2})
    result = train_trial(cfg, out_dir=str(tmp_path))
    names = {p.name for p in tmp_path.iterdir()}
    assert {"checkpoint.pt", "predictions.png", "result.json", "config.json"} <= names
    model, ckpt = load_checkpoint(str(tmp_path / "checkpoint.pt"))  # weights_only=True inside
    assert ckpt["trial_hash"] == result.trial_hash == cfg.identity
    assert TrialConfig.from_dict(ckpt["config"]) == cfg
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["final_metrics"]["dice"] == pytest.approx(result.final_metrics["dice"])
    # the rebuilt model reproduces the validation Dice
    from ielcore.data import build_dataset, split_indices
    from ielcore.metrics import segmentation_metrics

    ds = build_dataset("cells", seed=0, num_images=12, size=32)
    _, val = split_indices(12, 0.25, 0)
    model.eval()
    with torch.no_grad():
        pred = model(ds.images[val]).argmax(1)
    assert segmentation_metrics(pred, ds.masks[val], 3)["dice"] == pytest.approx(result.final_metrics["dice"])


def test_checkpoint_refuses_pickled_code(tmp_path: Path) -> None:
    import pickle

    path = tmp_path / "evil.pt"

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (print, ("pwned",))

    torch.save({"config": Evil()}, path, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(str(path))


def test_noop_trial_is_deterministic_and_cheap() -> None:
    cfg = TrialConfig.from_dict({"kind": "noop", "epochs": 4})
    a, b = train_trial(cfg), train_trial(cfg)
    assert a.history == b.history and a.epochs_run == 4 and a.status == "complete"


def test_iel_train_cli_writes_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "out"
    code = main(["train", str(config), "--set", "iel.type=heat", "--set", "epochs=1", "--out", str(out)])
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert 0.0 <= result["final_metrics"]["dice"] <= 1.0
    assert result["config"]["iel"]["type"] == "heat" and result["epochs_run"] == 1
    assert "dice" in capsys.readouterr().out


def test_iel_train_cli_bad_override_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(TINY))
    assert main(["train", str(config), "--set", "iel.type=warp"]) == 2
    err = capsys.readouterr().err
    assert "iel" in err and "heat" in err and "Traceback" not in err
