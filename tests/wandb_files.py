"""Reads an offline W&B run back from its run-<id>.wandb file, with the wandb package's own record types.

The file is a LevelDB-style log (a 7-byte ':W&B' header, then 32 KiB blocks of chunks with a 7-byte header:
CRC, little-endian length, type); each record is a wandb_internal_pb2.Record."""

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path):
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    position, pending = 7, b""
    while position + 7 <= len(data):
        if BLOCK - position % BLOCK < 7:  # too little room left in the block for a chunk header: padding
            position += BLOCK - position % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind == 0 and length == 0:  # zero padding at the end
            break
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def read_run(run_dir: Path) -> dict:
    """config (key: value), history (list of {key: value}), summary (key: value) and the run's files folder."""
    run_dir = Path(run_dir)
    (wandb_file,) = run_dir.glob("run-*.wandb")
    run = {"config": {}, "history": [], "summary": {}, "files": run_dir / "files", "job_type": None, "group": None}
    for record in records(wandb_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.update(job_type=record.run.job_type, group=record.run.run_group, name=record.run.display_name)
        elif kind == "config":
            for item in record.config.update:
                run["config"][item.key] = json.loads(item.value_json)
        elif kind == "history":
            run["history"].append({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item})
        elif kind == "summary":
            for item in record.summary.update:
                run["summary"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return run


def table(run: dict, key: str) -> tuple[list, list]:
    """(columns, data) of the last table logged under ``key``."""
    path = [row[f"{key}/path"] for row in run["history"] if f"{key}/path" in row][-1]
    content = json.loads((run["files"] / path).read_text())
    return content["columns"], content["data"]
