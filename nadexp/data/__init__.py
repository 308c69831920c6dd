"""Datasets. The Lightning data modules live in ``nadexp.data.datamodule`` (imported on use)."""

from nadexp.data.bases import BASES, direction_vector, fourier_direction, validate_direction
from nadexp.data.directional import DirectionalDataset

__all__ = ["BASES", "DirectionalDataset", "direction_vector", "fourier_direction", "validate_direction"]
