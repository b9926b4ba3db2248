"""Compatibility imports: the driver lives in :mod:`orchestrator.driver`."""

from orchestrator.driver import ClusterError, StudyOutcome, StudyRunner, check_resources, init_ray, run_study

__all__ = ["ClusterError", "StudyOutcome", "StudyRunner", "check_resources", "init_ray", "run_study"]
