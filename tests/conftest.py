import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from nadexp.config import compose_config

# The test suite writes only under temporary folders: the outputs/ and data/ of every run that names no directory
# of its own (and of every subprocess, which inherits this) go to one made for this session.
os.environ["NADEXP_ROOT"] = tempfile.mkdtemp(prefix="nadexp-tests-")
# pytest-xdist's workers share the cores: each takes its share of torch threads (and so do its subprocesses), so
# that two workers on two cores do not slow each other down many times over.
# A worker counts as a nadexp process for the whole session (nadexp.cores), so the runs in it take their share too.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    import atexit

    import torch

    from nadexp import cores

    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    cores.registry().mkdir(parents=True, exist_ok=True)
    (cores.registry() / str(os.getpid())).touch()
    atexit.register(lambda: (cores.registry() / str(os.getpid())).unlink(missing_ok=True))

ROOT = Path(__file__).resolve().parents[1]
# The paper's zoo (nadexp/models; arch=custom needs a user's class: tests/test_custom_arch.py), and the arch options that
# build torchvision or timm models (tests/test_library_models.py).
ARCHS = sorted(
    p.stem for p in (ROOT / "conf" / "arch").glob("*.yaml") if "nadexp.models.library" not in p.read_text() and p.stem != "custom"
)
LIBRARY_ARCHS = sorted(p.stem for p in (ROOT / "conf" / "arch").glob("*.yaml") if "nadexp.models.library" in p.read_text())
DATASETS = sorted(p.stem for p in (ROOT / "conf" / "dataset").glob("*.yaml"))

# Small and quick: a few hundred samples, one epoch, no W&B unless a test asks for it.
QUICK = [
    "experiment=single",
    "logger=none",
    "callbacks=none",
    "trainer.enable_progress_bar=false",
    "trainer.max_epochs=1",
    "dataset.n_train=256",
    "dataset.n_test=256",
    "trainer.accelerator=cpu",
]


@pytest.fixture
def compose(tmp_path):
    def _compose(*overrides):
        return compose_config(list(overrides), output_dir=tmp_path / "run")

    return _compose


def check_config_header(figure: str) -> None:
    """An experiment config opens with `# @package _global_` and a comment that gives the command that runs it,
    the time it takes (on a CPU and on a GPU) and what to expect."""
    header = (ROOT / "conf" / "experiment" / f"{figure}.yaml").read_text().split("\ndefaults:")[0]
    assert header.startswith("# @package _global_\n")
    for words in (f"python run.py experiment={figure}", "Time:", "CPU", "GPU", "Expect:"):
        assert words in header, (figure, words)


def check_result_schema(result: dict, task: str) -> None:
    """result.json as nadexp.results documents it, for every task: the common head, the task's fields, the tail."""
    keys = list(result)
    assert keys[:5] == ["task", "arch", "seed", "objective", "summary"], keys
    assert keys[-3:] == ["wall_time_s", "versions", "machine"], keys
    assert result["task"] == task and isinstance(result["summary"], dict) and result["machine"]["cpu"]
    assert isinstance(result["tf32"], bool)  # the precision policy, in every result.json


def refusal(overrides, run_dir) -> str:
    """The message `python run.py OVERRIDES` stops with, run in-process: the ConfigError that run.py prints as its
    one `error:` line before exiting with code 2 (tests/test_cli.py checks that path). Nothing may be written."""
    from nadexp.errors import ConfigError
    from nadexp.run.execute import execute

    with pytest.raises(ConfigError) as caught:
        execute(compose_config(list(overrides), output_dir=run_dir), list(overrides))
    assert not (Path(run_dir) / "result.json").exists()
    message = str(caught.value)
    assert "\n" not in message  # one line
    return message


def run_cli(*args, cwd=ROOT, timeout=600, env=None, script=ROOT / "run.py", process=False):
    """`python run.py ARGS` as a user runs it, returning a CompletedProcess: in this process through the entry
    function that run.py and the nadexp command call (nadexp.cli.main, Hydra and all), or, with ``process`` or
    another ``script``, in a new Python process (what only a process shows: start-up, signals, DDP ranks)."""
    if process or Path(script) != ROOT / "run.py":
        full_env = {**os.environ, **(env or {})}
        command = [sys.executable, str(script), *args]
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)
    from nadexp.cli import main

    return run_in_process(main, [str(ROOT / "run.py"), *map(str, args)], cwd, env or {})


def run_script(script, *args, cwd=ROOT, env=None, process=False):
    """`python SCRIPT ARGS` (a benchmark, an example): run as __main__ in this process, or (``process``) in a new one."""
    if process:
        return run_cli(*args, script=script, cwd=cwd, env=env)
    import runpy

    return run_in_process(lambda: runpy.run_path(str(script), run_name="__main__"), [str(script), *map(str, args)], cwd, env or {})


def run_reports(*args, cwd=ROOT, process=False):
    """`python -m nadexp.reports ARGS`, in this process through its main function, or (``process``) in a new one."""
    if process:
        return subprocess.run([sys.executable, "-m", "nadexp.reports", *map(str, args)], cwd=cwd, capture_output=True, text=True)
    from nadexp.reports.__main__ import main

    return run_in_process(lambda: main(sys.argv[1:]), ["nadexp.reports", *map(str, args)], cwd, {})


def run_in_process(entry, argv, cwd, env: dict) -> subprocess.CompletedProcess:
    """``entry()`` with ``argv`` as the command line, in ``cwd`` with ``env`` added: what it prints is captured (and
    the warnings it logs, as a process prints them), and the process is left as it was found (argv, path, modules
    of ``cwd``, environment, folder, logging, signal handlers, torch threads)."""
    import contextlib
    import io
    import logging
    import signal
    from unittest import mock

    import torch

    out, err, code = io.StringIO(), io.StringIO(), 0
    saved_env, saved_cwd, saved_argv, saved_path, modules = dict(os.environ), os.getcwd(), sys.argv, sys.path[:], set(sys.modules)
    root = logging.getLogger()
    handlers, level, sigterm, threads = root.handlers[:], root.level, signal.getsignal(signal.SIGTERM), torch.get_num_threads()
    try:
        os.environ.update({key: str(value) for key, value in env.items()})
        os.chdir(cwd)
        sys.argv = list(argv)
        warnings = logging.StreamHandler(err)  # Python's last resort in a process without logging set up
        warnings.setLevel(logging.WARNING)
        root.addHandler(warnings)
        # Hydra re-raises instead of reporting when a tracer is set (coverage sets one): report, as a process does.
        with (
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            mock.patch("hydra._internal.utils.is_under_debugger", lambda: False),
        ):
            try:
                returned = entry()
                code = returned if isinstance(returned, int) else 0
            except SystemExit as exit:
                code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
            except Exception:  # as Python ends a process on an uncaught exception
                import traceback

                traceback.print_exc()
                code = 1
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        signal.signal(signal.SIGTERM, sigterm)
        torch.set_num_threads(threads)
        sys.argv, sys.path[:] = saved_argv, saved_path
        for name in set(sys.modules) - modules:  # a user's model file (arch=custom) of this folder: the next test has its own
            if str(getattr(sys.modules[name], "__file__", None) or "").startswith(str(Path(cwd).resolve())) and Path(cwd).resolve() != ROOT:
                del sys.modules[name]
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess(list(argv), code, out.getvalue(), err.getvalue())


def random_images(n_train: int, n_test: int, classes: int):
    """Uniform random uint8 images (N, 3, 32, 32) with labels cycling through the classes, train and test."""
    import numpy as np

    rng = np.random.default_rng(0)
    return [(rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), np.arange(n) % classes) for n in (n_train, n_test)]


@pytest.fixture(scope="session")
def cifar10_dir(tmp_path_factory):
    """A few hundred images in CIFAR-10's own on-disk format (pickle batches and meta file)."""
    from nadexp.data.cifar10_files import write_cifar10_files

    root = tmp_path_factory.mktemp("cifar10")
    write_cifar10_files(root, *random_images(250, 100, 10))
    return root


def learnable_grey_images(n: int, seed: int):
    """Grey 28 x 28 uint8 images whose class t is a bright 5 x 5 block at a place of its own, on noise; labels."""
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    images = rng.integers(0, 80, (n, 28, 28))
    for i, t in enumerate(labels):
        row, col = 3 + 8 * (t // 4), 2 + 7 * (t % 4)
        images[i, row : row + 5, col : col + 5] = 255
    return images.astype(np.uint8), labels


@pytest.fixture(scope="session")
def fashion_mnist_dir(tmp_path_factory):
    """Fashion-MNIST's four gzipped IDX files with a few hundred learnable images."""
    from nadexp.data.fashion_mnist_files import write_fashion_mnist_files

    return write_fashion_mnist_files(tmp_path_factory.mktemp("fashion"), learnable_grey_images(600, 0), learnable_grey_images(200, 1))


@pytest.fixture(scope="session")
def cifar100_dir(tmp_path_factory):
    """A couple of hundred images in CIFAR-100's own on-disk format (train, test and meta pickles)."""
    from nadexp.data.cifar10_files import write_cifar100_files

    root = tmp_path_factory.mktemp("cifar100")
    write_cifar100_files(root, *random_images(200, 100, 100))
    return root


@pytest.fixture(scope="session")
def nads_dir(tmp_path_factory):
    """A stand-in NAD estimate: 64 orthonormal 1 x 32 x 32 directions (fewer than 1024: needs completing)."""
    import numpy as np
    import torch

    root = tmp_path_factory.mktemp("nads")
    rows = torch.linalg.qr(torch.randn(1024, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)).Q.T
    np.save(root / "nads.npy", rows.reshape(64, 1, 32, 32).float().numpy())
    np.save(root / "eigenvalues.npy", np.geomspace(1, 1e-3, 64))
    return root


def write_learnable_cifar10(root, n_train: int, n_test: int, noise: float, seed: int):
    """CIFAR-10-format files where each class is a fixed random colour pattern plus Gaussian pixel noise:
    separable, so a model trained on them must reach a high test accuracy."""
    import numpy as np

    from nadexp.data.cifar10_files import write_cifar10_files

    rng = np.random.default_rng(seed)
    patterns = rng.integers(40, 216, (10, 3, 32, 32))

    def split(n):
        labels = rng.permutation(np.arange(n) % 10)
        return np.clip(patterns[labels] + rng.normal(0, noise, (n, 3, 32, 32)), 0, 255).astype(np.uint8), labels

    write_cifar10_files(root, split(n_train), split(n_test))
    return root


def cifar10_overrides(cifar10_dir, nads_dir, *extra):
    """`experiment=cifar10` on the fixture: LeNet, one epoch, no logger, on CPU."""
    return [
        "experiment=cifar10",
        "arch=lenet",
        f"dataset.data_dir={cifar10_dir}",
        "dataset.check_md5=false",
        f"dataset.nads={nads_dir}",
        "trainer.max_epochs=1",
        "logger=none",
        "trainer.enable_progress_bar=false",
        "~callbacks.progress_bar",
        "trainer.accelerator=cpu",
        *extra,
    ]


# Run as `sh -c READ_ONLY FOLDER COMMAND...`: FOLDER read-only (a bind mount of itself) for COMMAND alone.
READ_ONLY = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"'


class ReadOnly:
    """``read_only(folder)``: a prefix for subprocess commands under which ``folder`` takes no writes, as an archive
    on a read-only disk. Root writes through permissions, so for root it is a read-only bind mount in a mount
    namespace of the command's own (nothing outside it changes); for other users, permissions, until ``undo()``.
    Skips where neither works."""

    def __init__(self):
        self.changed = []

    def __call__(self, folder) -> list[str]:
        import shutil

        folder = Path(folder)
        if os.geteuid() != 0:
            self.changed.append((folder, folder.stat().st_mode))
            folder.chmod(0o555)
            return []
        prefix = ["unshare", "--mount", "sh", "-c", READ_ONLY, str(folder)]
        probe = shutil.which("unshare") and subprocess.run([*prefix, "touch", str(folder / ".probe")], capture_output=True, text=True)
        if not probe or probe.returncode == 0 or "Read-only" not in probe.stderr:
            (folder / ".probe").unlink(missing_ok=True)
            pytest.skip("needs unshare and mount (a mount namespace) to make a folder read-only for root")
        return prefix

    def undo(self) -> None:
        while self.changed:
            folder, mode = self.changed.pop()
            folder.chmod(mode)


def in_small_disk(folder, script: str) -> list[str]:
    """A command that runs ``script`` (sh; $0 is ``folder``, "$@" the command appended) with ``folder`` on a new
    64 KiB disk of its own (tmpfs, in a mount namespace): a disk that fills within a run. Skips without root."""
    import shutil

    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare to give a command a small disk of its own")
    Path(folder).mkdir(parents=True, exist_ok=True)
    probe = subprocess.run(["unshare", "--mount", "sh", "-c", 'mount -t tmpfs -o size=64k tmpfs "$0"', str(folder)], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("needs a mount namespace to give a command a small disk of its own")
    return ["unshare", "--mount", "sh", "-c", f'mount -t tmpfs -o size=64k tmpfs "$0" && {script}', str(folder)]


@pytest.fixture
def read_only():
    made = ReadOnly()
    yield made
    made.undo()
