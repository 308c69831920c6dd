"""The directions a sweep trains on: Fourier cells (one per real direction), NAD indices, pixels."""

from nadexp.errors import ConfigError


def conjugate(kx: int, ky: int, height: int, width: int) -> tuple[int, int]:
    """(-kx, -ky) on the grid: the same real direction up to sign."""
    return (-kx) % width, (-ky) % height


def signed(k: int, size: int) -> int:
    """The frequency index k in -size/2 .. size/2 - 1 (the fftshift order)."""
    return (k + size // 2) % size - size // 2


def fourier_cells(height: int, width: int, stride: int = 1, max_frequency=None) -> list[tuple[int, int]]:
    """One (kx, ky) per real Fourier direction on the sub-grid of every ``stride``-th frequency (only |kx|, |ky| <=
    ``max_frequency`` if given): of each conjugate pair the first in row-major order; the heat map mirrors the other."""
    cells, seen = [], set()
    for ky in range(0, height, stride):
        for kx in range(0, width, stride):
            if max_frequency is not None and max(abs(signed(kx, width)), abs(signed(ky, height))) > max_frequency:
                continue
            if conjugate(kx, ky, height, width) not in seen:
                seen.add((kx, ky))
                cells.append((kx, ky))
    return cells


def index_list(spec, size: int) -> list[int]:
    """NAD indices from a list, or a "start:stop:step" string (Python slice rules), within ``size``."""
    if isinstance(spec, str):
        try:
            parts = [int(p) if p.strip() else None for p in spec.split(":")]
            indices = list(range(size))[slice(*parts)]
        except (TypeError, ValueError) as error:
            raise ConfigError(f"sweep.indices={spec!r} is not a list or a start:stop:step range") from error
    else:
        indices = [int(i) for i in spec]
    bad = [i for i in indices if not 0 <= i < size]
    if bad or not indices:
        raise ConfigError(f"sweep.indices must select NAD indices in 0..{size - 1}, got {spec!r}")
    return indices


def sweep_directions(basis: str, shape, stride: int = 1, indices=None, num_nads: int = 0, max_frequency=None) -> list[list[int]]:
    """Every direction address of a sweep over ``basis`` for images of ``shape`` (C, H, W)."""
    if stride < 1:
        raise ConfigError(f"sweep.stride must be >= 1, got {stride}")
    _, height, width = shape
    if basis == "fourier":
        if max_frequency is not None and max_frequency < 0:
            raise ConfigError(f"sweep.max_frequency must be >= 0 or null (all), got {max_frequency}")
        return [list(cell) for cell in fourier_cells(height, width, stride, max_frequency)]
    if basis == "pixel":
        return [[row, col] for row in range(0, height, stride) for col in range(0, width, stride)]
    if basis == "nad":
        return [[i] for i in index_list("::1" if indices is None else indices, num_nads)]
    raise ConfigError(f"sweep.basis={basis!r} is unknown: choose one of fourier, pixel, nad")
