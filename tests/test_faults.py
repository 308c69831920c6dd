"""Bad settings and damaged files: every trainer, callback and logger value is checked before a run writes
anything, and a damaged NAD file is named for what it is."""

import pytest

from conftest import QUICK, refusal, run_cli, run_reports


@pytest.mark.parametrize(
    "override, words",
    [
        ("trainer.max_epochs=abc", "trainer.max_epochs='abc' is not what Trainer takes"),
        ("trainer.max_epochs=-3", "trainer.max_epochs=-3: Trainer refuses it (`max_epochs` must be a non-negative integer or -1"),
        ("+trainer.limit_train_batches=-1", "trainer.limit_train_batches=-1: Trainer refuses it"),
        ("+trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches must be >= 1, got 0"),
        ("callbacks.progress_bar._target_=nowhere.Bar", "callbacks.progress_bar._target_=nowhere.Bar does not import"),
        ("trainer.gradient_clip_val=-0.5", "trainer.gradient_clip_val must be >= 0"),
        ("trainer.accelerator=quantum", "trainer.accelerator='quantum' is unknown: choose one of"),
        ("trainer.enable_progress_bar=maybe", "trainer.enable_progress_bar='maybe' is not what Trainer takes"),
        ("+trainer.max_epoch=3", "trainer.max_epoch is not a setting of Trainer (close: max_epochs"),
        ("callbacks.progress_bar.refresh_rate=-1", "callbacks.progress_bar.refresh_rate must be >= 0"),
        ("+callbacks.progress_bar.refresh=2", "callbacks.progress_bar.refresh is not a setting of TQDMProgressBar"),
        ("+logger.csv.flush_logs_every_n_steps=often", "logger.csv.flush_logs_every_n_steps='often' is not what"),
    ],
)
def test_a_bad_trainer_callback_or_logger_value_stops_the_run_before_it_writes(tmp_path, override, words):
    group = ["callbacks=default"] if override.lstrip("+").startswith("callbacks.") else []
    group += ["logger=csv"] if override.lstrip("+").startswith("logger.") else []
    message = refusal([*QUICK, "arch=logreg", *group, override], tmp_path / "run")
    assert words in message, message
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


@pytest.mark.parametrize("experiment", ["nads", "hyperplanes_lenet", "fourier_predicted"])
def test_an_estimators_logger_settings_are_checked_too(tmp_path, experiment):
    settings = [f"experiment={experiment}", "arch=logreg", "logger=csv", "+logger.csv.flush_logs_every_n_steps=often"]
    message = refusal(settings, tmp_path / "run")
    assert "logger.csv.flush_logs_every_n_steps='often' is not what CSVLogger takes" in message, message
    assert not (tmp_path / "run").exists()


def test_a_bad_trainer_value_is_one_line_and_exit_code_2_on_the_command_line(tmp_path):
    done = run_cli(*QUICK, "arch=logreg", "trainer.max_epochs=abc", f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0, done.stderr
    assert "trainer.max_epochs" in done.stderr and not (tmp_path / "run").exists()


def test_no_progress_bar_is_a_setting_that_works_with_the_default_callbacks(tmp_path, capfd):
    from nadexp.config import compose_config
    from nadexp.run.execute import execute

    settings = [*(o for o in QUICK if o != "callbacks=none"), "arch=logreg", "trainer.enable_progress_bar=false"]
    assert "callbacks=default" not in settings  # the default callbacks, with their progress bar's settings
    execute(compose_config(settings, output_dir=tmp_path / "run"), settings)
    assert (tmp_path / "run" / "result.json").is_file() and "Epoch" not in capfd.readouterr().err


@pytest.mark.parametrize("content", [b"not numpy at all", b"", b"\x93NUMPY\x01\x00truncated"])
def test_a_nads_file_that_is_not_numpy_is_named_for_what_it_is(tmp_path, content):
    bad = tmp_path / "nads.npy"
    bad.write_bytes(content)
    message = refusal([*QUICK, "arch=logreg", "dataset.basis=nad", f"dataset.nads={bad}", "dataset.direction=[0]"], tmp_path / "run")
    assert "not a NumPy .npy file" in message and "dataset.nads" in message and "pickle" not in message, message


def test_the_ranges_checked_here_are_only_those_lightning_leaves_unchecked():
    import pytorch_lightning as pl

    from nadexp.run.settings import HARDWARE, UNCHECKED_BY_LIGHTNING

    for key, low in UNCHECKED_BY_LIGHTNING.items():
        if key != "refresh_rate":  # the progress bar's, not the Trainer's
            pl.Trainer(**HARDWARE, logger=False, enable_progress_bar=False, **{key: low - 1})  # taken without a word
    pl.callbacks.TQDMProgressBar(refresh_rate=-1)


def test_the_checks_accept_every_shipped_trainer_and_callback_config(tmp_path):
    from nadexp.config import compose_config
    from nadexp.run.settings import check_run_settings

    for extra in (["trainer=cpu"], ["trainer=gpu"], ["trainer=ddp"], ["trainer=ddp_cpu"], ["callbacks=snapshots"], ["logger=many"]):
        check_run_settings(compose_config([*QUICK, *extra]), "train")  # raises on a false alarm


SWEEP = [*(o for o in QUICK if o != "callbacks=none"), "sweep=fourier", "arch=logreg", "dataset.shape=[1,8,8]", "sweep.stride=4"]


def damage(path, how: str, other) -> None:
    text = path.read_text()
    path.write_text(
        {"truncated": text[: len(text) // 2], "empty": "", "wrong schema": '["a", "list"]', "wrong settings": other.read_text()}[how]
    )


def test_damaged_cell_records_are_kept_aside_and_their_cells_trained_again(tmp_path, caplog):
    from nadexp.config import compose_config
    from nadexp.reports.sweep_report import load_sweep
    from nadexp.run.execute import execute

    settings = [*(o for o in SWEEP if o != "sweep.stride=4"), "sweep.stride=2"]
    first = execute(compose_config(settings, output_dir=tmp_path), settings)
    cells = sorted((tmp_path / "cells").glob("*.json"))
    assert len(cells) == first["cells"] >= 5
    ways = ("truncated", "empty", "wrong schema", "wrong settings")
    for path, how in zip(cells, ways):
        damage(path, how, other=cells[-1])
    with caplog.at_level("WARNING"):
        assert len(load_sweep(tmp_path)["cells"]) == len(cells) - 3  # a report skips the unreadable ones, with a warning
        again = execute(compose_config(settings, output_dir=tmp_path), settings)
    assert again["cells"] == first["cells"] and again["mean_test_acc"] == first["mean_test_acc"]  # trained again, same numbers
    for path in cells[: len(ways)]:
        assert (tmp_path / "cells" / f"{path.name}.unreadable").is_file() and path.name in caplog.text  # kept, never deleted
    assert "trained again" in caplog.text and len(list((tmp_path / "cells").glob("*.json"))) == len(cells)


def test_the_report_command_skips_an_unreadable_result_with_a_warning_and_lists_failed_runs(tmp_path):
    import json

    good, bad, failed = tmp_path / "runs" / "good", tmp_path / "runs" / "bad", tmp_path / "runs" / "failed"
    for run_dir in (good, bad, failed):
        run_dir.mkdir(parents=True)
    record = {"task": "train", "arch": "lenet", "dataset": "fashion_mnist", "variant": "plain", "seed": 0, "test_acc": 0.9}
    (good / "result.json").write_text(json.dumps(record))
    (bad / "result.json").write_text('{"task": "train", "arch"')
    stopped = {"task": "train", "arch": "vgg11", "seed": 1, "status": "failed", "reason": "SystemExit: 143"}
    (failed / "result.json").write_text(json.dumps(stopped))
    done = run_reports(tmp_path / "runs", "--out", tmp_path / "out", process=True)  # the report command's round trip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "bad/result.json is unreadable" in done.stderr and (tmp_path / "out" / "flip_table.md").is_file()
    listed = (tmp_path / "out" / "failed_runs.md").read_text()
    assert listed.startswith("1 failed run(s)") and f"| {failed} | train | vgg11 | 1 | SystemExit: 143 |" in listed


def sweep_command(sweep_dir) -> list[str]:
    import sys

    from conftest import ROOT

    settings = [o for o in SWEEP if o != "sweep.stride=4"]
    return [sys.executable, str(ROOT / "run.py"), *settings, "sweep.stride=2", "sweep.models_at_once=1", f"hydra.run.dir={sweep_dir}"]


def test_a_sweep_or_shard_started_twice_trains_each_cell_once_and_every_cell_is_recorded(tmp_path):
    import re
    import subprocess

    from nadexp.data.directions import fourier_cells

    # Every frequency, and cells long enough (about 0.7 s each) that shard 0's outlast the processes' start-up on a
    # loaded machine: a double launch of it, and shard 1.
    command = [*(o for o in sweep_command(tmp_path / "sweep") if o != "sweep.stride=2"), "sweep.stride=1", "sweep.num_shards=2"]
    command += ["dataset.n_train=16384", "trainer.max_epochs=6"]
    commands = [[*command, "sweep.shard=0"], [*command, "sweep.shard=0"], [*command, "sweep.shard=1"]]
    started = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for command in commands]
    outputs = [process.communicate(timeout=600)[0] for process in started]
    assert [process.returncode for process in started] == [0, 0, 0], "".join(out[-1500:] for out in outputs)
    trained = [int(re.search(r"(\d+) cells trained by this process", out).group(1)) for out in outputs]
    every_cell = fourier_cells(8, 8, stride=1)
    assert trained[0] + trained[1] == len(every_cell[0::2]) and min(trained[:2]) >= 1, trained  # shard 0's cells, split
    assert trained[2] == len(every_cell[1::2])
    cells = sorted((tmp_path / "sweep" / "cells").glob("*.json"))
    assert len(cells) == len(every_cell) and not list((tmp_path / "sweep" / "cells").glob("*.claim*"))


def test_a_claim_whose_owner_is_gone_is_taken_over(tmp_path, caplog):
    import json
    import os
    import socket
    import subprocess

    from nadexp.config import compose_config
    from nadexp.run.execute import execute

    gone = subprocess.Popen(["true"])
    gone.wait()
    cells = tmp_path / "sweep" / "cells"
    cells.mkdir(parents=True)
    for kx in range(0, 8, 2):
        for ky in range(-4, 4, 2):  # every group this sweep could start with, claimed by a process that has ended
            claim = {"host": socket.gethostname(), "pid": gone.pid, "time": 0}
            os.symlink(json.dumps(claim), cells / f"logreg-fourier-{kx}_{ky}-s0.claim")  # as nadexp.results.claims writes one
    settings = sweep_command(tmp_path / "sweep")[2:-1]
    execute(compose_config(settings, output_dir=tmp_path / "sweep"), settings)
    assert "its owner is gone; taking it over" in caplog.text
    assert len(list(cells.glob("*.json"))) >= 8


EXPLODES = """
import os
from torch import nn


class Explodes(nn.Module):  # trains one step, then fails inside Lightning's loop while EXPLODE is set
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.fc, self.steps = nn.Linear(int(input_shape[0] * input_shape[1] * input_shape[2]), num_classes), 0

    def forward(self, x):
        self.steps += self.training
        if os.environ.get("EXPLODE") and self.steps > 1:
            raise RuntimeError("the loss went to NaN")
        return self.fc(x.flatten(1))
"""


def test_a_run_that_fails_after_it_started_says_so_and_the_same_command_starts_it_again(tmp_path, monkeypatch, request):
    import json
    import sys

    from nadexp.config import compose_config
    from nadexp.run.execute import execute

    (tmp_path / "mynet.py").write_text(EXPLODES)
    settings = [*QUICK, "arch=custom", "arch.target=mynet.Explodes"]
    failed = run_cli(*settings, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, env={"EXPLODE": "1"})
    assert failed.returncode == 1 and failed.stderr.strip().splitlines()[-1] == (
        "error: RuntimeError: the loss went to NaN (HYDRA_FULL_ERROR=1 shows where)"
    ), failed.stderr[-2000:]
    record = json.loads((tmp_path / "run" / "result.json").read_text())
    assert record["status"] == "failed" and record["reason"] == "RuntimeError: the loss went to NaN", record
    monkeypatch.delenv("EXPLODE", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    request.addfinalizer(lambda: sys.modules.pop("mynet", None))  # this folder's mynet.py: a later test has its own
    again = execute(compose_config(settings, output_dir=tmp_path / "run"), settings)  # the same settings, in the same folder
    assert again == json.loads((tmp_path / "run" / "result.json").read_text())
    assert "status" not in again and 0 <= again["test_acc"] <= 1


def test_sigterm_ends_a_run_with_a_failed_record(tmp_path):
    import json
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT

    run_dir = tmp_path / "run"
    settings = [o for o in QUICK if not o.startswith(("trainer.max_epochs", "dataset.n_train"))]
    command = [
        sys.executable,
        str(ROOT / "run.py"),
        *settings,
        "arch=lenet",
        "trainer.max_epochs=500",
        "dataset.n_train=4096",
        f"hydra.run.dir={run_dir}",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run_dir / "config.yaml").is_file() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(2)  # into the training loop
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM
    record = json.loads((run_dir / "result.json").read_text())
    assert record["status"] == "failed" and record["reason"] == f"SystemExit: {128 + signal.SIGTERM}"


WRITER = """
import sys
from nadexp.results.atomic import write_json_atomic

record = {"arch": "logreg", "basis": "fourier", "direction": [0, 0], "seed": 0, "status": "ok", "padding": "x" * 4_000_000}
print("writing", flush=True)
for i in range(10_000):
    write_json_atomic(sys.argv[1], {**record, "i": i})
"""


@pytest.mark.parametrize("name", ["cells/logreg-fourier-0_0-s0.json", "result.json"])
def test_kill_9_while_a_record_is_written_leaves_the_whole_record_or_none(tmp_path, name):
    import json
    import subprocess
    import sys
    import time

    from nadexp.sweeps.store import CellStore

    target = tmp_path / name
    target.parent.mkdir(parents=True, exist_ok=True)
    for delay in (0.0, 0.031, 0.1):  # SIGKILL at moments that fall inside writes of 4 MB records
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
        assert writer.stdout.readline() == "writing\n"
        time.sleep(delay)
        writer.kill()
        writer.communicate()
        if target.exists():
            record = json.loads(target.read_text())  # never half a record
            assert len(record["padding"]) == 4_000_000
    if name.startswith("cells/"):
        store = CellStore(target.parent)
        assert "logreg-fourier-0_0-s0" in store  # the last whole record counts; a killed write leaves only a temporary file
        store.remove_orphans()
        assert [p.name for p in target.parent.iterdir()] == [target.name]


def contents(folder) -> dict:
    """Every file below ``folder`` and its bytes."""
    from pathlib import Path

    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def test_a_read_only_output_folder_is_one_line_before_anything_starts_and_nothing_in_it_changes(tmp_path, read_only):
    import os
    import subprocess
    import sys

    from nadexp.config import compose_config
    from nadexp.run.execute import execute

    from conftest import ROOT

    archive = tmp_path / "archive"
    settings = [*QUICK, "arch=logreg"]
    execute(compose_config(settings, output_dir=archive / "run"), settings)
    before = contents(archive)
    prefix = read_only(archive)
    python = [sys.executable, str(ROOT / "run.py")]
    attempts = {  # what is refused, and the option that the line names
        "hydra.run.dir": [*python, *settings, f"hydra.run.dir={archive / 'new'}"],
        "hydra.run.dir=" + str(archive / "run"): [*python, *settings, "resume=true", f"hydra.run.dir={archive / 'run'}"],
        "hydra.run.dir=" + str(archive / "outputs"): [*python, *settings],  # NADEXP_ROOT=archive: the default folders
        "hydra.sweep.dir=" + str(archive / "outputs"): [*python, "-m", *settings, "seed=1,2"],
        "--out": [sys.executable, "-m", "nadexp.reports", str(archive / "run"), "--out", str(archive / "report")],
    }
    env = {**os.environ, "NADEXP_ROOT": str(archive)}
    for option, command in attempts.items():
        done = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, (option, done.stderr[-3000:])
        assert done.stderr.startswith(f"error: {option}") and "cannot be written" in done.stderr, (option, done.stderr)
    read_only.undo()
    assert contents(archive) == before


def test_a_sweep_whose_folder_stops_taking_writes_ends_in_one_line_keeps_its_records_and_resumes(tmp_path, read_only, caplog):
    import json
    import subprocess
    import sys

    from nadexp.config import compose_config
    from nadexp.run.execute import execute

    from conftest import ROOT

    sweep = tmp_path / "sweep"
    execute(compose_config(SWEEP, output_dir=sweep), SWEEP)
    (sweep / "cells" / "logreg-fourier-4_0-s0.json").unlink()  # a cell left to do
    before = contents(sweep / "cells")
    command = [sys.executable, str(ROOT / "run.py"), *SWEEP, f"hydra.run.dir={sweep}"]  # the same sweep, from the command line
    stopped = subprocess.run([*read_only(sweep / "cells"), *command], capture_output=True, text=True, timeout=300)
    assert stopped.returncode == 1 and "Traceback" not in stopped.stderr, stopped.stderr[-3000:]
    last = stopped.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: could not write {sweep / 'cells'}") and "the records written before it are kept" in last, last
    read_only.undo()
    assert contents(sweep / "cells") == before  # nothing lost, nothing half-written
    assert json.loads((sweep / "result.json").read_text())["status"] == "failed"
    caplog.set_level("INFO")
    resumed = execute(compose_config(SWEEP, output_dir=sweep), SWEEP)  # the same sweep once the folder takes writes
    assert "3 already done, 1 to train" in caplog.text
    assert resumed["cells"] == 4 and "status" not in resumed and contents(sweep / "cells").items() >= before.items()


def test_an_unreadable_result_is_kept_aside_and_the_run_starts_again_to_the_same_numbers(tmp_path, caplog):
    from nadexp.config import compose_config
    from nadexp.run.execute import execute

    settings = [*QUICK, "arch=logreg"]
    first = execute(compose_config(settings, output_dir=tmp_path / "run"), settings)
    (tmp_path / "run" / "result.json").write_text('{"task": "tra')  # a copy cut short
    again = execute(compose_config(settings, output_dir=tmp_path / "run"), settings)
    assert again["test_acc"] == first["test_acc"] and again["history"] == first["history"]
    assert (tmp_path / "run" / "result.json.unreadable").read_text() == '{"task": "tra'
    assert "kept as result.json.unreadable; the run starts again" in caplog.text


def test_a_disk_that_fills_mid_sweep_ends_in_one_line_with_whole_records_and_the_sweep_resumes(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    from nadexp.data.directions import fourier_cells

    from conftest import ROOT, in_small_disk

    disk, seen = tmp_path / "disk", tmp_path / "seen"
    sweep_settings = [*(o for o in SWEEP if o != "sweep.stride=4"), "sweep.stride=1", f"hydra.run.dir={disk / 'sweep'}"]
    # Run the sweep until the disk is full; keep what it left; make the disk larger; run the same command again.
    script = (
        f'"$@" 2> {seen}.stderr; echo $? > {seen}.rc; cp -r "$0/sweep/cells" {seen}; '
        f'mount -o remount,size=8m "$0" && "$@" && cp "$0/sweep/result.json" {seen}.result.json'
    )
    command = in_small_disk(disk, script)
    subprocess.run([*command, sys.executable, str(ROOT / "run.py"), *sweep_settings], capture_output=True, timeout=600)
    stderr = Path(f"{seen}.stderr").read_text()
    assert Path(f"{seen}.rc").read_text().strip() == "1" and "Traceback" not in stderr, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: could not write {disk / 'sweep'}") and "(No space left on device)" in last, last
    kept = sorted(seen.glob("*.json"))
    assert 0 < len(kept) < len(fourier_cells(8, 8, stride=1)) and not list(seen.glob(".*.tmp"))
    for path in kept:  # whole records only
        assert json.loads(path.read_text())["status"] == "ok"
    assert json.loads(Path(f"{seen}.result.json").read_text())["cells"] == len(fourier_cells(8, 8, stride=1))


def test_a_claim_is_a_file_where_the_file_system_has_no_links(tmp_path, monkeypatch):
    import errno
    import os

    from nadexp.results import claims

    def no_links(target, path):
        raise OSError(errno.EPERM, "Operation not permitted", str(path))

    monkeypatch.setattr(os, "symlink", no_links)
    held = tmp_path / "cell.claim"
    assert claims.claim(held) and held.is_file() and not held.is_symlink()
    assert not claims.claim(held)  # held by this live process: not taken twice
    held.unlink()
    assert claims.claim(held)
