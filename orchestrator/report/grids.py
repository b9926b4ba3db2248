"""One prediction grid per arm, copied from the trials' own ``predictions.png`` artifacts.

The results database's ``iel_artifacts`` table maps a trial to its artifact URIs (written when the trial
finished; a reused trial carries its original's).  ``file:`` URIs are copied directly, any other scheme
(``mlflow-artifacts:``, ``s3:``...) is downloaded through MLflow.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

from orchestrator.db import ResultsDB
from orchestrator.report.render import Block, Heading, Image, Paragraph
from orchestrator.report.tables import StudyData

PREDICTION_ARTIFACT = "predictions.png"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:80] or "arm"


def prediction_artifacts(db: ResultsDB, trial_ids: Sequence[int]) -> dict[int, str]:
    """Trial id -> URI of its ``predictions.png`` (from the ``iel_artifacts`` table)."""
    from sqlalchemy import select

    from orchestrator.db.models import Artifact

    if not trial_ids:
        return {}
    q = select(Artifact.trial_id, Artifact.uri).where(
        Artifact.name == PREDICTION_ARTIFACT, Artifact.trial_id.in_(list(trial_ids))
    )
    with db.engine.connect() as conn:
        return {int(tid): str(uri) for tid, uri in conn.execute(q)}


def fetch_artifact(uri: str, dest: Path, tracking_uri: str) -> bool:
    """Copy one artifact (``file:`` URIs directly, any other scheme through MLflow) to ``dest``."""
    try:
        if uri.startswith("file:") or "://" not in uri:
            src = Path(unquote(urlparse(uri).path)) if uri.startswith("file:") else Path(uri)
            shutil.copyfile(src, dest)
            return True
        import mlflow.artifacts

        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=tmp, tracking_uri=tracking_uri
            )
            shutil.copyfile(local, dest)
        return True
    except Exception:  # a missing artifact leaves that arm without a grid, the report goes on
        return False


def prediction_grids(
    db: ResultsDB, data: StudyData, out_dir: Path, tracking_uri: str
) -> tuple[list[Block], list[Path]]:
    """One prediction grid per arm, all from the same row where possible (the last row, usually the
    highest noise rate, that has grids for the most arms), each from its cell's lowest seed."""
    uris = prediction_artifacts(db, [t.id for c in data.cells for t in c.trials])
    if not uris:
        return [], []
    has = {c.key: [t for t in c.trials if t.id in uris] for c in data.cells}
    arms = list(dict.fromkeys(c.arm for c in data.cells))
    coverage = {row: len({c.arm for c in data.cells if c.row == row and has[c.key]}) for row in data.rows}
    chosen_row = max(reversed(data.rows), key=lambda r: coverage[r])
    grid_dir = out_dir / "predictions"
    grid_dir.mkdir(parents=True, exist_ok=True)
    blocks: list[Block] = [
        Heading("Predictions", 2),
        Paragraph(
            "Per arm, the validation images of one trial: image, noisy label (what the noise model makes "
            "of the clean label), truth, prediction."
        ),
    ]
    paths: list[Path] = []
    for arm in arms:
        cells = [c for c in data.cells if c.arm == arm and has[c.key]]
        if not cells:
            continue
        cell = next((c for c in cells if c.row == chosen_row), cells[-1])
        trial = has[cell.key][0]
        dest = grid_dir / f"{_slug(arm)}.png"
        if fetch_artifact(uris[trial.id], dest, tracking_uri):
            paths.append(dest)
            blocks.append(Image(f"{arm} — {cell.row}, seed {trial.seed}", f"predictions/{dest.name}"))
    return (blocks if paths else []), paths
