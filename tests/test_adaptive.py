"""Adaptive seeds end to end on real Ray, Optuna, MLflow and SQLite, with no-op trials whose Dice differs by
a set amount between arms (``noop.effect``) plus seeded noise (``noop.noise_sd``).

What must hold: a clear effect is decided within a few seeds and gets no more; a null arm ends
``equivalent`` or at ``max``; no trial is trained twice; the decisions in the database are the ones recomputed
from the trials; the seeds a comparison used depend only on the data (a run killed mid-study and resubmitted
ends exactly like an uninterrupted one).
"""

from __future__ import annotations

import os
import signal
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from orchestrator.db import ResultsDB
from orchestrator.db.comparisons import load_decisions
from orchestrator.decisions import study_decisions
from orchestrator.driver import StudyRunner
from orchestrator.settings import Settings
from orchestrator.study import load_study
from tests.studyfiles import write_study
from tests.test_faults import wait_for
from tests.test_faults_cluster import Driver, drivers, states  # noqa: F401  (fixture)
from tests.test_orchestrator import assert_consistent

pytestmark = pytest.mark.usefixtures("ray_local")

START, MAX, BATCH = 3, 13, 2


def adaptive_doc(name: str, sleep_s: float = 0.0, max_seeds: int = MAX) -> dict[str, Any]:
    return {
        "version": 1,
        "name": name,
        "base": {"kind": "noop", "epochs": 2, "noop": {"noise_sd": 0.02, "sleep_s": sleep_s}},
        "arms": {
            "plain": {},
            "null": {"iel": {"type": "heat"}},  # no effect on a no-op trial: a true null
            "clear": {"iel": {"type": "tv"}, "noop": {"effect": 0.15}},
        },
        "baseline": "plain",
        "seeds": {"adaptive": {"start": START, "max": max_seeds, "batch": BATCH}},
        "decide": {"metric": "dice", "margin": 0.05, "alpha": 0.05, "method": "t"},
        "max_concurrent": 2,
        "retries": 0,
    }


def seeds_by_cell(db: ResultsDB, study: str) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for t in db.trials(study):
        out.setdefault(t.cell_key, []).append(t.seed)
    return {k: sorted(v) for k, v in out.items()}


def decisions_by_cell(db: ResultsDB, study: str) -> dict[str, tuple[Any, ...]]:
    return {
        r.cell_key: (r.decision, r.n, r.estimate, r.cs_low, r.cs_high, r.decided_at_n)
        for r in load_decisions(db, study)
    }


def run_in_process(tmp: Path, home: Path, doc: dict[str, Any]) -> ResultsDB:
    spec = load_study(write_study(tmp, doc))
    outcome = StudyRunner(spec, Settings.resolve(home=str(home))).run()
    assert outcome.failed == 0
    return ResultsDB(Settings.resolve(home=str(home)).db_url)


def test_clear_effect_stops_early_null_ends_equivalent_or_at_max(tmp_path: Path, iel_home: Path) -> None:
    doc = adaptive_doc("adapt")
    db = run_in_process(tmp_path, iel_home, doc)
    seeds = seeds_by_cell(db, "adapt")
    decisions = decisions_by_cell(db, "adapt")
    clear = next(k for k in seeds if "clear" in k)
    null = next(k for k in seeds if "null" in k)
    base = next(k for k in seeds if "plain" in k)

    # every cell holds seeds 0..n-1, each once: no trial twice
    for key, s in seeds.items():
        assert s == list(range(len(s))), (key, s)
    hashes = [t.trial_hash for t in db.trials("adapt")]
    assert len(hashes) == len(set(hashes))

    decision, n, estimate, low, high, at = decisions[clear]
    assert decision == "better" and low is not None and low > 0
    assert 0.10 < estimate < 0.20
    # looked at after start, start + batch, ... seeds; decided within the last batch, and no seed after it
    assert at is not None and len(seeds[clear]) == n < MAX
    assert (n - START) % BATCH == 0 and n - BATCH < at <= n

    decision, n, *_ = decisions[null]
    assert decision == "equivalent" or len(seeds[null]) == MAX
    assert decision != "better" and decision != "worse"
    # the baseline has exactly the seeds its arms needed
    assert len(seeds[base]) == max(len(seeds[clear]), len(seeds[null]))

    # stored decisions are the ones recomputed from the trials
    spec = load_study(write_study(tmp_path, doc))
    assert spec.decide is not None
    again = {d.cell: d.decision for d in study_decisions(db, "adapt", spec.decide)}
    assert again[clear].decision.value == decisions[clear][0]
    assert again[clear].estimate == pytest.approx(decisions[clear][2], abs=1e-12)
    assert_consistent(iel_home, "adapt")

    # submitting again trains nothing and changes nothing
    before = (seeds, decisions)
    db2 = run_in_process(tmp_path, iel_home, doc)
    assert (seeds_by_cell(db2, "adapt"), decisions_by_cell(db2, "adapt")) == before


def test_t_sprt_stops_a_clear_effect_and_a_null_through_the_driver(tmp_path: Path, iel_home: Path) -> None:
    """``method: t_sprt`` end to end: a clear effect ends ``better`` within a few seeds, a true null ends
    ``futile`` or ``equivalent`` (or at max), neither gets a seed after its decision, stored = recomputed."""
    doc = adaptive_doc("adaptsprt")
    doc["decide"] = {**doc["decide"], "method": "t_sprt"}
    db = run_in_process(tmp_path, iel_home, doc)
    seeds = seeds_by_cell(db, "adaptsprt")
    decisions = decisions_by_cell(db, "adaptsprt")
    clear = next(k for k in seeds if "clear" in k)
    null = next(k for k in seeds if "null" in k)
    assert decisions[clear][0] == "better" and len(seeds[clear]) < MAX
    decision, n, _, _, _, at = decisions[null]
    assert decision in ("futile", "equivalent") or len(seeds[null]) == MAX
    for key in (clear, null):
        d, n, _, _, _, at = decisions[key]
        if d != "undecided":  # looked at after start, start + batch, ...: no seed after the deciding look
            assert at is not None and len(seeds[key]) == n and n - BATCH < at <= n
    spec = load_study(write_study(tmp_path, doc))
    assert spec.decide is not None
    again = {d.cell: d.decision.decision.value for d in study_decisions(db, "adaptsprt", spec.decide)}
    assert again == {k: v[0] for k, v in decisions.items()}


def test_killed_driver_resumes_to_the_same_decisions(
    tmp_path: Path,
    iel_home: Path,
    drivers: list[Driver],  # noqa: F811
) -> None:
    """SIGKILL the driver mid-study, submit again: the same seeds and decisions as an uninterrupted run in
    another home, and no trial recorded twice."""
    doc = adaptive_doc("adaptkill", sleep_s=0.25)
    reference = run_in_process(tmp_path, tmp_path / "reference-home", doc)

    path = write_study(tmp_path, doc)
    db_path = iel_home / "iel.db"
    first = Driver(path, iel_home)
    drivers.append(first)
    wait_for(
        "the driver to finish some trials past the start seeds",
        lambda: first.proc.poll() is not None or states(db_path).get("COMPLETE", 0) >= 3 * START + 1,
        deadline_s=240,
    )
    assert first.proc.poll() is None, first.output()
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait(timeout=60)

    resumed = run_in_process(tmp_path, iel_home, doc)
    assert seeds_by_cell(resumed, "adaptkill") == seeds_by_cell(reference, "adaptkill")
    assert decisions_by_cell(resumed, "adaptkill") == decisions_by_cell(reference, "adaptkill")
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT trial_hash FROM iel_trials").fetchall()
    finally:
        conn.close()
    assert not [h for h, n in Counter(r[0] for r in rows).items() if n > 1]
    assert_consistent(iel_home, "adaptkill")


def test_a_larger_max_continues_where_the_study_stopped(tmp_path: Path, iel_home: Path) -> None:
    small = run_in_process(tmp_path, iel_home, adaptive_doc("adaptmax", max_seeds=START))
    first = seeds_by_cell(small, "adaptmax")
    assert all(len(s) == START for s in first.values())
    assert {d[0] for d in decisions_by_cell(small, "adaptmax").values()} == {"undecided"}

    grown = run_in_process(tmp_path, iel_home, adaptive_doc("adaptmax"))
    second = seeds_by_cell(grown, "adaptmax")
    assert any(len(s) > START for s in second.values())
    kept = {t.trial_hash: t.id for t in small.trials("adaptmax") if t.seed < START}
    assert {t.trial_hash: t.id for t in grown.trials("adaptmax") if t.seed < START} == kept
