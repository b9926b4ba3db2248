#!/usr/bin/env bash
# The GPU check: everything this project can only verify on a machine with an NVIDIA GPU, in one run
# that finishes within about 8 minutes and prints one table.
#
#   1. a short study with fractional GPUs: resources.gpus 0.25 (4 trials on one GPU at once) with the
#      per-trial memory fraction enforced; one trial asks for far more memory than its fraction and must
#      be recorded as FAILED with failure_kind "oom" while the other trials go on and complete;
#   2. benchmarks/bench_iel.py --device cuda (IEL time and saved memory on the WBC-size U-Net);
#   3. benchmarks/bench_fused.py --device cuda --setting wbc (the fused-training goal: 4x trials per
#      GPU-hour for the WBC-size U-Net).
#
# Usage (from the repository root, after `make install`):  bash benchmarks/gpu_check.sh [--python PY]
# Without an NVIDIA GPU it says so and exits 0.  Logs and stores go to a fresh folder under $TMPDIR.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ "${1:-}" = "--python" ] && PY=$2
[ -x "$PY" ] || PY=$(command -v python3)

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "gpu_check: no NVIDIA GPU is visible to PyTorch on this machine (torch.cuda.is_available() is False);"
  echo "nothing to check. Run this script on a machine with an NVIDIA GPU and a CUDA build of PyTorch."
  exit 0
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/iel-gpu-check.XXXXXX")
export IEL_HOME="$WORK/home"
IEL="$PY -m orchestrator.cli"
echo "gpu_check: $("$PY" -c 'import torch; p=torch.cuda.get_device_properties(0); print(f"{p.name}, {p.total_memory/2**30:.0f} GiB, torch {torch.__version__}")')"
echo "gpu_check: logs and stores under $WORK"

cat > "$WORK/gpu_fractional.yaml" <<'YAML'
version: 1
name: gpu_fractional
base:
  epochs: 3
  device: cuda
  batch_size: 4
  data: {type: cells, num_images: 32, size: 64}
  noise: {type: block, rate: 0.2, block: 2}
  model: {type: unet, width: 16, depth: 2}
  iel: {type: heat, dt: 0.1, steps: 20}
  artifacts: {checkpoint: false, prediction_grid: false}
factors:
  noise.rate: [0.0, 0.2, 0.4, 0.6]
zip:
  # the second arm asks for ~50x the memory of its fraction: it must fail as "oom", alone
  - {model.width: [16, 64], model.depth: [2, 4], data.size: [64, 512], batch_size: [4, 64]}
baseline: {model.width: 16}
seeds: 1
fuse: off
resources: {cpus: 1, gpus: 0.25, gpu_memory_fraction: 0.05}
max_concurrent: 4
retries: 0
YAML

t0=$(date +%s)
timeout 240 $IEL submit "$WORK/gpu_fractional.yaml" > "$WORK/study.log" 2>&1
study_rc=$?
t1=$(date +%s)
timeout 150 "$PY" benchmarks/bench_iel.py --device cuda --batches 2,16 --steps 0,20,50 --types heat,mcf \
  > "$WORK/bench_iel.log" 2>&1
iel_rc=$?
t2=$(date +%s)
timeout 150 "$PY" benchmarks/bench_fused.py --device cuda --setting wbc > "$WORK/bench_fused.log" 2>&1
fused_rc=$?
t3=$(date +%s)

"$PY" - "$WORK" "$study_rc" "$iel_rc" "$fused_rc" "$((t1 - t0))" "$((t2 - t1))" "$((t3 - t2))" <<'PYEOF'
"""Read the three runs back and print the one table."""
import json
import sqlite3
import sys
from pathlib import Path

work, study_rc, iel_rc, fused_rc, *secs = sys.argv[1:]
home = Path(work) / "home"
rows = []


def row(check, result, goal, ok):
    rows.append((check, result, goal, "ok" if ok else "FAIL"))


db = home / "iel.db"
if db.exists():
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    trials = con.execute(
        "SELECT cell_key, state, failure_kind, started_at, finished_at FROM iel_trial_summary "
        "WHERE study = 'gpu_fractional'"
    ).fetchall()
    oom = [t for t in trials if t[2] == "oom"]
    done = [t for t in trials if t[1] == "COMPLETE"]
    spans = sorted((t[3], t[4]) for t in trials if t[3] and t[4])
    overlap = max((sum(1 for s, e in spans if s <= start < e) for start, _ in spans), default=0)
    row("fractional GPUs: trials at once on one GPU", f"{overlap} (gpus 0.25)", ">= 2, at most 4", 2 <= overlap <= 4)
    row("memory fraction enforced: oversized trial", f"{len(oom)} oom of 4 oversized", "4 oom", len(oom) == 4)
    row("the other trials go on", f"{len(done)} COMPLETE of 4", "4", len(done) == 4)
else:
    row("fractional-GPU study", f"no results database (exit {study_rc})", "runs", False)
row("study exit status", study_rc, "1 (some trials failed for good: the oom ones)", study_rc == "1")


def tail(name):
    p = Path(work) / name
    return p.read_text().strip().splitlines()[-3:] if p.exists() else ["(no output)"]


row("bench_iel.py --device cuda", f"exit {iel_rc}; {tail('bench_iel.log')[-1][:60]}", "IEL < 10 % of a step", iel_rc == "0")
row("bench_fused.py --device cuda --setting wbc", f"exit {fused_rc}; {tail('bench_fused.log')[-1][:60]}", "fused >= 4x", fused_rc == "0")
row("wall seconds (study / iel / fused)", " / ".join(secs), "< 480 in all", sum(map(int, secs)) < 480)

w = [max(len(str(r[i])) for r in rows + [("check", "result", "goal", "")]) for i in range(4)]
print()
print(" | ".join(h.ljust(w[i]) for i, h in enumerate(("check", "result", "goal", ""))))
print("-+-".join("-" * x for x in w))
for r in rows:
    print(" | ".join(str(c).ljust(w[i]) for i, c in enumerate(r)))
print("\nfull outputs: " + ", ".join(str(Path(work) / n) for n in ("study.log", "bench_iel.log", "bench_fused.log")))
print(json.dumps({"failures": sum(r[3] == "FAIL" for r in rows)}))
PYEOF
