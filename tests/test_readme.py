"""Every shell command on the README's page, as a reader types it, at its smallest size: a renamed option,
experiment or make target breaks this test instead of a reader's first hour. A command that needs what a test
machine lacks (a GPU, a cluster, the network, W&B credentials) is taken up to where it would start: its config
composed and every check of the command passed, nothing run."""

import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest
import tomllib

from nadexp.config import check_dataset, compose_config
from nadexp.run.settings import check_run_settings
from nadexp.run.tasks import check_command

from conftest import ROOT, run_cli

TINY = ["dataset.n_train=64", "dataset.n_test=64", "trainer.max_epochs=1"]
SMALLEST = {  # the command's arguments -> (what makes it small, its settings otherwise as written; what it prints)
    "experiment=fourier_demo": (["sweep.stride=8", "sweep.max_frequency=0", *TINY], "heatmap_panel.png"),
    "": (TINY, "test acc"),
    "experiment=easy_vs_hard": (TINY, "test acc"),
    "--help": ([], "fourier_demo"),
    "list experiments": ([], "fourier_demo"),
}
CHECKED_ONLY = {  # the command's arguments -> what it needs that a test machine has not
    "experiment=single trainer=gpu arch=resnet18": "a GPU",
    "-m hydra/launcher=slurm experiment=fourier_lenet sweep.num_shards=8 sweep.shard=0,1,2,3,4,5,6,7": "a SLURM cluster",
    "experiment=fourier_demo logger.wandb.offline=false logger.wandb.project=nadexp": "W&B credentials",
    "experiment=cifar10 dataset.download=true trainer.max_epochs=1": "the network",
}


def shell_commands(text: str) -> list[str]:
    """The commands of the ```bash blocks of ``text``: comments dropped, `a && b` as two."""
    commands, inside = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            inside = line.strip() == "```bash" if not inside else False
            continue
        if inside:
            code = "" if line.lstrip().startswith("#") else line.split(" #", 1)[0].strip()
            commands += [part.strip() for part in code.split("&&") if part.strip()]
    return commands


COMMANDS = shell_commands((ROOT / "README.md").read_text())


def nadexp_arguments(command: str) -> str | None:
    words = shlex.split(command)
    if words[:1] == ["nadexp"]:
        return " ".join(words[1:])
    if words[:2] == ["python", "run.py"]:
        return " ".join(words[2:])
    return None


def test_the_readme_shows_commands_and_this_test_knows_each_one():
    assert "make run" in COMMANDS and "make test" in COMMANDS, COMMANDS[:2]
    for command in COMMANDS:
        arguments = nadexp_arguments(command)
        if arguments is not None:
            assert arguments in SMALLEST or arguments in CHECKED_ONLY, f"{command!r}: add it to SMALLEST or CHECKED_ONLY"


def test_the_make_targets_and_tools_it_names_exist():
    makefile = (ROOT / "Makefile").read_text()
    assert "run.py experiment=fourier_demo $(ARGS)" in makefile.split("\nrun:", 1)[1].split("\n\n")[0]  # make run = the demo
    assert "pytest $(ARGS)" in makefile.split("\ntest:", 1)[1].split("\n\n")[0]
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    bin_dir = Path(sys.executable).parent
    for command in COMMANDS:
        words = shlex.split(command)
        if words[:3] == ["pip", "install", "-e"]:
            assert words[3].strip(".[]") in extras, command
        elif words[0] in ("pytest", "ruff"):
            assert (bin_dir / words[0]).exists() or shutil.which(words[0]), f"{command}: {words[0]} is not installed"
        else:
            assert words[:2] in (["make", "run"], ["make", "test"]) or nadexp_arguments(command) is not None, command


@pytest.mark.parametrize("arguments", [a for a in map(nadexp_arguments, COMMANDS) if a in SMALLEST])
def test_a_readme_command_runs_as_written(arguments, tmp_path):
    smaller, printed = SMALLEST[arguments]
    done = run_cli(*shlex.split(arguments), *smaller, cwd=tmp_path, env={"NADEXP_ROOT": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert printed in done.stdout + done.stderr, (done.stdout + done.stderr)[-2000:]
    if "--help" not in arguments and "list" not in arguments:
        assert list((tmp_path / "outputs").rglob("result.json")), "it wrote no result"


@pytest.mark.parametrize("arguments", [a for a in map(nadexp_arguments, COMMANDS) if a in CHECKED_ONLY])
def test_a_readme_command_that_needs_more_than_a_cpu_passes_every_check(arguments, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)  # the credentials `wandb login` would leave
    monkeypatch.setenv("NADEXP_ROOT", str(tmp_path))
    overrides = [word for word in shlex.split(arguments) if word != "-m"]
    overrides = [o if "[" in o else o.split(",")[0] for o in overrides]  # a multirun's first job
    cfg = compose_config(overrides, output_dir=tmp_path / "run")
    task = check_command(cfg, overrides)
    check_dataset(cfg, task)
    check_run_settings(cfg, task)
    assert not (tmp_path / "run").exists()


def docs_commands() -> list[tuple[str, str]]:
    """(page, arguments) of every `python run.py` / `nadexp` command in docs/*.md, continuation lines joined."""
    found = []
    for page in sorted((ROOT / "docs").glob("*.md")):
        for command in shell_commands(page.read_text().replace("\\\n", " ")):
            words = shlex.split(re.sub(r"<[^>]*>", "EARLIER", command))  # <run dir>: a folder an earlier step made
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # NADEXP_ROOT=... before the command
                words = words[1:]
            if words[:1] == ["nadexp"]:
                found.append((page.name, words[1:]))
            elif words[:1] == ["python"] and len(words) > 1 and words[1].endswith("run.py"):
                found.append((page.name, words[2:]))
    return found


HYDRA_FLAGS = ("--cfg", "--config-dir", "--hydra-help", "--help", "-h")  # Hydra's own: checked by tests/test_cli.py
MADE_EARLIER = ("does not exist", "no nads.npy")  # a folder an earlier step of the page makes (a NAD estimate, a run)


@pytest.mark.parametrize("page, arguments", docs_commands(), ids=lambda value: " ".join(value) if isinstance(value, list) else value)
def test_every_command_in_docs_composes_and_passes_its_checks(page, arguments, tmp_path, monkeypatch):
    """Each command as written (placeholders such as <run dir> given a folder, a multirun's first job): it composes
    and passes every check of the command, or stops only at a folder that an earlier step of the page makes."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from nadexp.errors import ConfigError

    if any(word.split("=")[0] in HYDRA_FLAGS for word in arguments):
        pytest.skip("Hydra's own flags")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("NADEXP_ROOT", str(tmp_path))
    words = [word.replace("EARLIER", str(tmp_path / "earlier")) for word in arguments if word != "-m"]
    overrides = []
    for parsed in OverridesParser.create().parse_overrides(words):  # a multirun's first job
        value = next(parsed.sweep_string_iterator()) if parsed.is_sweep_override() else parsed.get_value_element_as_str()
        overrides.append(f"{parsed.get_key_element()}={value}")
    try:
        cfg = compose_config(overrides, output_dir=tmp_path / "run")
        task = check_command(cfg, overrides)
        check_dataset(cfg, task)
        check_run_settings(cfg, task)
    except ConfigError as error:
        assert any(phrase in str(error) for phrase in MADE_EARLIER), f"{page}: {' '.join(arguments)}: {error}"
