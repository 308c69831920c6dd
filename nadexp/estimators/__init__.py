"""Estimators of an architecture's bias, selected by the `estimator` config group."""

from nadexp.estimators.nads import NADEstimator, load_nads, principal_directions, subspace_overlap

__all__ = ["NADEstimator", "load_nads", "principal_directions", "subspace_overlap"]
