"""Estimators of an architecture's bias, one module each (nads, hyperplanes, class_density, fourier_prediction) behind the interface
of nadexp.estimators.base, chosen by the `estimator` config group and run by nadexp.estimators.run."""
