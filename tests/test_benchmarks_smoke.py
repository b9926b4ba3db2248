"""The benchmark scripts run end to end in their ``--quick`` mode and print their tables (no timing asserted).

Each script runs in its own process (its own Ray instance or cluster), as a user runs it.  The two that
start Ray take 20-40 s each on an idle 2-core machine (Ray and worker start-up), so they are ``slow``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_script(name: str, *args: str, timeout: float = 240) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "IEL_"))}
    env.update(RAY_USAGE_STATS_ENABLED="0", MLFLOW_ENABLE_ASYNC_LOGGING="false", PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / name), "--quick", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def table_rows(out: str, header_start: str) -> list[list[str]]:
    """The whitespace-split rows that follow the header line starting with ``header_start``."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith(header_start))
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        rows.append(line.split())
    return rows


def test_bench_iel_quick_prints_every_configuration() -> None:
    out = run_script("bench_iel.py", "--threads", "1")
    rows = table_rows(out, "batch  IEL")
    configs = {(r[1], r[2], int(r[3])) for r in rows}
    assert configs == {
        ("none", "-", 0),
        ("heat", "adjoint", 5),
        ("heat", "autograd", 5),
        ("heat", "adjoint", 20),
        ("heat", "autograd", 20),
        ("tv", "plain", 5),
        ("tv", "checkpoint", 5),
        ("tv", "plain", 20),
        ("tv", "checkpoint", 20),
    }
    # Memory is a count of saved bytes, not a timing: exact properties hold on any machine.
    extra = {(r[1], r[2], int(r[3])): float(r[9]) for r in rows if r[3] != "0"}
    assert extra[("heat", "adjoint", 5)] == extra[("heat", "adjoint", 20)] == 0.0
    assert extra[("heat", "autograd", 20)] > extra[("heat", "autograd", 5)] > 0.0
    assert extra[("tv", "checkpoint", 20)] < extra[("tv", "plain", 20)]


@pytest.mark.slow
def test_bench_orchestration_quick_prints_both_sides() -> None:
    pytest.importorskip("ray.tune.search.optuna", reason="the Ray Tune side needs ray[tune]")
    out = run_script("bench_orchestration.py", "--modes", "grid")
    rows = table_rows(out, "side  ")
    sides = [" ".join(r[:-6]) for r in rows]
    assert sides == ["platform (grid)", "Ray Tune"]
    assert all(r[-6] == "4" for r in rows)  # trials column
    assert rows[-1][-1] == "1.000"  # Ray Tune is the reference of the ratio column
    assert re.fullmatch(r"\d+\.\d{3}", rows[0][-1])


@pytest.mark.slow
def test_bench_scaling_quick_prints_efficiency() -> None:
    out = run_script("bench_scaling.py")
    rows = table_rows(out, "workers nodes")
    assert [(int(r[0]), int(r[1]), int(r[2])) for r in rows] == [(1, 1, 2), (2, 2, 2)]
    assert rows[0][6] == "1.00"  # efficiency of one worker against itself


def test_bench_adaptive_quick_prints_both_designs() -> None:
    out = run_script("bench_adaptive.py")
    rows = table_rows(out, "sd  effect")
    fixed = [r for r in rows if r[2] == "fixed"]
    adaptive = [r for r in rows if r[2] == "adaptive"]
    assert len(fixed) == 4 and len(adaptive) == 8  # effects 0, 0.5, 1, 2 SD x (max 30, max as needed)
    assert {r[1] for r in rows} == {"0.0sd", "0.5sd", "1.0sd", "2.0sd"}
    assert all(r[3] == "34.0" and r[-1] == "1.00" for r in fixed)  # 80 % power at 0.5 SD: 34 seeds
    for r in adaptive:  # shares of the four outcomes add up to 1
        assert sum(float(x) for x in r[6:10]) == pytest.approx(1.0, abs=2e-3)
    # a 2 SD effect is decided long before the fixed count
    two = [r for r in adaptive if r[1] == "2.0sd"]
    assert all(float(r[5]) < 17 and float(r[6]) > 0.95 for r in two)


def test_bench_adaptive_study_quick_sums_one_study() -> None:
    out = run_script("bench_adaptive_study.py")
    rows = table_rows(out, "sd margin/sd design")
    designs = {" ".join(r[2:-4]) for r in rows}
    assert {"fixed largest SD", "fixed oracle"} <= designs and any(
        d.startswith("adaptive t") for d in designs
    )
    for r in rows:  # rates are shares
        assert all(0.0 <= float(x) <= 1.0 for x in r[-3:])
    largest = [float(r[-4]) for r in rows if " ".join(r[2:-4]) == "fixed largest SD"]
    assert len(set(largest)) == 1  # one seed count for the whole study
    totals = [line for line in out.splitlines() if "x fixed-largest" in line]
    assert totals and "1.000 x fixed-largest" in totals[0]


def test_gpu_check_without_a_gpu_says_so_and_exits_0() -> None:
    """CI has no GPU: the GPU check must not fail there, and must say why it checked nothing."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: run `bash benchmarks/gpu_check.sh` itself")
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--python", sys.executable],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "no NVIDIA GPU is visible to PyTorch" in proc.stdout
    assert "gpu_check: logs and stores" not in proc.stdout  # nothing was started
