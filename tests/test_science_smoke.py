"""A small version of research question 1 (docs/results.md) runs in the suite: the shipped study, shrunk to
CPU size, produces a report with every arm and every seed. It asserts nothing about which arm wins."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator.driver import StudyRunner
from orchestrator.report import build_report
from orchestrator.settings import Settings
from orchestrator.study import parse_study

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.usefixtures("ray_local")
def test_heat_vs_noise_small_version_reports_all_arms_and_seeds(iel_home: Path, tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "studies" / "paper_heat_vs_noise.yaml").read_text())
    doc["name"] = "paper_heat_vs_noise_small"
    doc["base"].update(epochs=1, batch_size=8)
    doc["base"]["data"].update(num_images=12, size=32)
    doc["base"]["model"].update(width=4)
    doc["factors"]["noise.rate"] = [0.0, 0.6]
    doc["seeds"] = 2
    spec = parse_study(doc, source="paper_heat_vs_noise_small")
    settings = Settings.resolve(home=str(iel_home))
    outcome = StudyRunner(spec, settings).run()
    assert outcome.failed == 0 and outcome.trained == 16  # 2 rates x 4 arms x 2 seeds
    report = build_report(settings, spec.name, tmp_path / "report", log_to_mlflow=False)
    dice = [s for s in report.stats if s.metric == "dice"]
    assert len(dice) == 8 and all(s.n == 2 for s in dice)
    arms = {s.arm for s in dice}
    assert len(arms) == 4  # plain CE, heat IEL, smoothing loss, label smoothing
    comparisons = [c for c in report.comparisons if c.metric == "dice"]
    assert len(comparisons) == 6 and all(c.n == 2 for c in comparisons)  # 3 arms vs baseline x 2 rates
    assert Path(report.path).exists() and report.figures
