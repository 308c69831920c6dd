"""A sweep's results: one JSON record per (arch, direction, seed) cell, each written atomically.

A re-run of the same sweep skips the cells whose record exists; a killed sweep loses at most the cell in
flight (its record is never half-written).
"""

import json
from pathlib import Path

from nadexp.results import write_json_atomic


class CellStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(arch: str, basis: str, direction, seed: int) -> str:
        return f"{arch}-{basis}-{'_'.join(str(d) for d in direction)}-s{seed}"

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def __contains__(self, key: str) -> bool:
        return self.path(key).is_file()

    def write(self, key: str, record: dict) -> None:
        write_json_atomic(self.path(key), record)

    def records(self) -> list[dict]:
        return [json.loads(path.read_text()) for path in sorted(self.root.glob("*.json"))]

    def remove_orphans(self) -> None:
        """Temporary files of writers killed between writing and renaming; call once every cell is recorded,
        when no writer of this sweep is left."""
        for path in self.root.glob(".*.json.*.tmp"):
            path.unlink(missing_ok=True)
