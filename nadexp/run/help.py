"""`nadexp --help` and `nadexp list <group>`: the options a user picks, read from conf/, with what each is for
(Hydra's own help, which lists the typed schemas too, is ``nadexp --hydra-help``)."""

import textwrap
from pathlib import Path

from nadexp.run.identity import CONFIG_DIR

GROUPS = {  # the config groups, in the order a command line names them, with what each decides
    "experiment": "a prepared experiment; its header gives the command, the time and what to expect (nadexp list experiments)",
    "arch": "the network (arch=custom arch.target=mymodule.MyNet: your own)",
    "dataset": "the data: D(v), the linearly separable data of one direction v, or real images",
    "sweep": "train on every direction of a basis, resumably, instead of once",
    "estimator": "analyse the arch instead of training it: NADs, hyperplanes, class densities, a predicted map",
    "optimizer": "the optimiser of a training run",
    "scheduler": "its learning-rate schedule",
    "trainer": "where and how Lightning trains: CPU, GPU, DDP",
    "logger": "where runs are logged (W&B offline by default)",
    "callbacks": "progress bar, checkpoints, per-epoch weight snapshots",
    "hydra/launcher": "run a multirun's jobs in parallel processes or on SLURM (-m ...)",
}


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONFIG_DIR / group).glob("*.yaml"))


def usage() -> str:
    lines = ["nadexp [group=option ...] [key=value ...]      (python run.py ... in the checkout; add -m to sweep over values)", ""]
    lines.append("With no options it trains LeNet once on D(v). Config groups, one option each:")
    for group, what in GROUPS.items():
        listed = textwrap.wrap(", ".join(options(group)), 100, initial_indent=" " * 17, subsequent_indent=" " * 17)
        lines += [f"  {group:<15}{what}", *listed]
    lines += [
        "",
        "nadexp list <group>          each option of a group with the first line of its file (list experiments: what each reproduces)",
        "nadexp --cfg job [options]   every setting of a command, key=value to change one (docs/configs.md)",
        "nadexp --hydra-help          Hydra's own flags",
    ]
    return "\n".join(lines)


def header(path: Path, indent: int) -> str:
    """The first line of a config file's opening comment, and its Time: line if it has one."""
    comments = [line[1:].strip() for line in path.read_text().splitlines() if line.startswith("#") and "@package" not in line]
    first = next((line for line in comments if line), "")
    time = next((line for line in comments if line.startswith("Time:")), "")
    return f"{first}\n{'':<{indent}}{time}" if time else first


def listing(name: str) -> str:
    """``nadexp list <name>``: a group (experiments, archs, dataset, ...) with a line per option."""
    group = next((g for g in GROUPS if name in (g, f"{g}s", g.split("/")[-1], f"{g.split('/')[-1]}s")), None)
    if group is None:
        raise ValueError(f"nadexp list {name}: choose one of {', '.join(GROUPS)}")
    width = max(map(len, options(group))) + 2
    return "\n".join(f"{option:<{width}}{header(CONFIG_DIR / group / f'{option}.yaml', width)}" for option in options(group))
