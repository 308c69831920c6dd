"""A sweep's results: one JSON record per (arch, direction, seed) cell, written atomically, so a re-run skips the cells
recorded and a killed sweep loses at most the cells in flight. An unreadable record is set aside (<name>.json.unreadable,
with a warning) and its cell trained again; processes sharing a sweep claim each cell first (nadexp.results.claims)."""

from pathlib import Path

from nadexp.results import claims
from nadexp.results.atomic import remove_orphans, write_json_atomic
from nadexp.results.schema import CELL_KEYS, UnreadableRecord, read_record, set_aside


class CellStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(arch: str, basis: str, direction, seed: int) -> str:
        return f"{arch}-{basis}-{'_'.join(str(d) for d in direction)}-s{seed}"

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def read(self, key: str) -> dict | None:
        """The record of ``key``; None when there is none, or when it is unreadable or another cell's (then it is moved aside)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            record = read_record(path, CELL_KEYS)
            own = self.key(record["arch"], record["basis"], record["direction"], record["seed"])
            if own != key:
                raise UnreadableRecord(f"{path} holds the record of another cell ({own})")
            return record
        except UnreadableRecord as error:
            set_aside(path, error, then="its cell is trained again")
            return None

    def __contains__(self, key: str) -> bool:
        """Whether ``key`` has a record; a test that reads nothing (``checked`` has read them all once)."""
        return self.path(key).is_file()

    def checked(self) -> set[str]:
        """The keys whose records are readable and their own cell's, read once; the others are set aside."""
        return {path.stem for path in sorted(self.root.glob("*.json")) if self.read(path.stem) is not None}

    def write(self, key: str, record: dict) -> None:
        write_json_atomic(self.path(key), record)

    def records(self) -> list[dict]:
        return [record for path in sorted(self.root.glob("*.json")) if (record := self.read(path.stem)) is not None]

    def claim(self, name: str) -> bool:
        """Whether this process now holds the claim on the cell ``name`` (nadexp.results.claims)."""
        return claims.claim(self.root / f"{name}.claim")

    def release(self, name: str) -> None:
        (self.root / f"{name}.claim").unlink(missing_ok=True)

    def remove_orphans(self) -> None:
        """Temporary files of writers killed between writing and renaming; call once every cell is recorded (no writer left)."""
        remove_orphans(self.root, "*.json")
