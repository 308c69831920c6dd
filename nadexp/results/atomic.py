"""Atomic writes: readers (and parallel jobs of one sweep) see the old file or the new one, never half of one."""

import csv
import io
import json
import os
import uuid
from pathlib import Path


def write_text_atomic(path, text: str | bytes) -> None:
    """``text`` (or bytes) into a temporary file beside ``path``, then renamed over it. The file is created as open() creates
    one (mode 0o666 less the umask), so a result is as readable as any other file its user writes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb" if isinstance(text, bytes) else "x") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError as error:  # a full disk: the error of a write names no file, so it is named here
        tmp.unlink(missing_ok=True)
        if error.filename:
            raise
        raise OSError(error.errno, error.strerror, str(path)) from error
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path, payload: dict) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2) + "\n")


def write_npy_atomic(path, array) -> None:
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    write_text_atomic(path, buffer.getvalue())


def write_csv_atomic(path, columns, rows) -> None:
    """rows (dicts) as a CSV of ``columns``; keys outside them are left out."""
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, table.getvalue())


def remove_orphans(folder, pattern: str = "*") -> None:
    """Temporary files of writers killed between writing and renaming; call when no writer is left."""
    for path in Path(folder).glob(f".{pattern}.*.tmp"):
        path.unlink(missing_ok=True)
