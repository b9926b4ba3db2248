"""``iel train``: one configuration, printed per epoch, optionally tracked in MLflow (``--mlflow``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

EXIT_OK, EXIT_FAILED = 0, 1


def _print(text: str) -> None:
    print(text, flush=True)


def cmd_train(args: argparse.Namespace) -> int:
    from ielcore.errors import SpecError
    from ielcore.fields import check_plain
    from ielcore.spec import TrialConfig, apply_overrides, load_config_file
    from ielcore.yamlio import parse_yaml_text

    raw = load_config_file(args.config)  # the size, alias and tag limits of every YAML file
    overrides = {}
    for item in args.set or []:
        if "=" not in item:
            raise SpecError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key] = parse_yaml_text(value, source=f"--set {key}")
        check_plain(overrides[key], key)
    cfg = TrialConfig.from_dict(apply_overrides(raw, overrides), source=args.config)
    if args.experiment is not None and not args.mlflow:
        raise SpecError("--experiment names the MLflow experiment of the run: give --mlflow URI too")
    if not args.mlflow:
        return _train(cfg, args, None)
    from orchestrator.train_tracking import TrackedTrain

    with TrackedTrain(args.mlflow, cfg, args.config, args.experiment) as tracked:
        code = _train(cfg, args, tracked)
    _print(
        f"tracked as MLflow run {tracked.run_id} in experiment {tracked.experiment_name!r} at {args.mlflow}"
    )
    return code


def _train(cfg: Any, args: argparse.Namespace, tracked: Any) -> int:
    from ielcore.train import train_trial

    class _Print:
        def report(self, epoch: int, metrics: Any) -> bool:
            shown = " ".join(
                f"{k}={v:.4f}" for k, v in metrics.items() if k in ("train_loss", "val_loss", "dice", "miou")
            )
            _print(f"epoch {epoch:3d}  {shown}")
            if tracked is not None:
                tracked.report(epoch, metrics)
            return True

    result = train_trial(cfg, _Print(), out_dir=args.out)
    if tracked is not None:
        tracked.done(result)
    _print(f"status: {result.status}  device: {result.device}  time: {result.timings['total_s']:.1f}s")
    _print(json.dumps({"metrics": result.final_metrics}, indent=2))
    if "result" in result.artifacts:
        _print(f"wrote {result.artifacts['result']}")
    if result.status == "diverged":
        _print(f"the run diverged: {result.error}")
        return EXIT_FAILED
    return EXIT_OK
