"""The driver: turns a plan into finished trials, asynchronously, as the single writer of every store.

* :mod:`.loop` -- :class:`StudyRunner` and the loop (dispatch, collect, poll);
* :mod:`.queue` -- what runs next (the plan's trials, Optuna's asks, fused groups, follow-up trials);
* :mod:`.recorder` -- the single writer (results database, Optuna, MLflow run lifecycle);
* :mod:`.cluster` -- Ray start, resource and worker start checks, lock owners, signals.
"""

from orchestrator.driver.cluster import ClusterError, check_resources, init_ray
from orchestrator.driver.loop import StudyOutcome, StudyRunner, run_study

__all__ = ["ClusterError", "StudyOutcome", "StudyRunner", "check_resources", "init_ray", "run_study"]
