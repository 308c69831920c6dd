"""The CPU's cores shared between the nadexp processes on one machine (nadexp.cores)."""

import os
import subprocess

import pytest
import torch

from nadexp import cores


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A registry of its own and a machine of 4 cores."""
    monkeypatch.setenv("NADEXP_PROCESSES", str(tmp_path / "processes"))
    monkeypatch.setattr(cores, "cores", lambda: 4)
    (tmp_path / "processes").mkdir()
    before = torch.get_num_threads()
    yield tmp_path / "processes"
    torch.set_num_threads(before)


def test_a_run_takes_its_share_of_the_cores_and_gives_it_back(machine):
    other = subprocess.Popen(["sleep", "30"])  # another nadexp process, alive
    try:
        (machine / str(other.pid)).touch()
        gone = subprocess.Popen(["true"])
        gone.wait()
        (machine / str(gone.pid)).touch()  # one that ended without unregistering
        torch.set_num_threads(3)
        with cores.sharing():
            assert (machine / str(os.getpid())).is_file() and cores.processes() == 2
            assert torch.get_num_threads() == 2 and not (machine / str(gone.pid)).exists()
            (machine / str(other.pid)).unlink()  # the other one ended: the next look takes every core
            assert cores.share() == 2  # not looked at again within LOOK_EVERY_S: a loop of networks stays cheap
            assert cores.share(now=True) == 4 and torch.get_num_threads() == 4
        assert torch.get_num_threads() == 3 and not (machine / str(os.getpid())).exists()  # as it was found
    finally:
        other.kill()
        other.wait()


def test_an_explicit_thread_count_is_kept(machine):
    (machine / "1").touch()  # pid 1 is alive on every machine
    with cores.sharing(threads=3):
        assert cores.share(now=True) == 3 and torch.get_num_threads() == 3
    with cores.sharing():
        assert cores.share(now=True) == 2
