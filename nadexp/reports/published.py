"""The published Fourier heat maps shipped with nadexp (published/README.md: source, grid, licence)."""

import csv
from pathlib import Path

from nadexp.errors import ConfigError

PUBLISHED_CSV = Path(__file__).with_name("published") / "fourier_lenet_logreg.csv"
PUBLISHED_SHAPE = (1, 32, 32)  # one channel, 32 x 32 images; even frequencies only
COLUMNS = {"lenet": "acc_lenet", "logreg": "acc_logreg"}  # arch name -> column of test accuracies (%)


def has_published_map(arch: str, shape) -> bool:
    return arch in COLUMNS and tuple(shape) == PUBLISHED_SHAPE


def published_map(arch: str) -> dict[tuple[int, int], float]:
    """Test accuracy (a fraction) per cell, keyed by signed (f_rows, f_cols) = (ky, kx) in -16 .. 14."""
    if arch not in COLUMNS:
        raise ConfigError(f"no published Fourier heat map for arch {arch!r}: there is one for {', '.join(COLUMNS)}")
    with PUBLISHED_CSV.open(newline="") as file:
        cell = lambda row: (int(row["cycles_down_rows"]), int(row["cycles_across_cols"]))
        return {cell(row): float(row[COLUMNS[arch]]) / 100 for row in csv.DictReader(file)}
