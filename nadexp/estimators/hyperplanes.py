"""Hyperplane arrangements of conv layers (Gamba et al. 2020; protocol section 2). A filter w in R^d (d = C_in k k) cuts each receptive
field with a hyperplane whose normal has cos = sum(w) / (||w|| sqrt(d)) with the identity line; at an i.i.d. symmetric init cos ~ N(0, 1/d)
and P(cos <= 0) = 0.5. Per-layer statistics, tests against init and the null, distances from init and critical layers (docs/analyses.md)."""

import logging
import math
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from omegaconf import DictConfig
from scipy import stats
from torch import nn

from nadexp.errors import ConfigError
from nadexp.estimators.base import Estimator
from nadexp.estimators.trained_run import data_and_net_factory, load_weights, training_run_config
from nadexp.generators import drawing_from, seeded
from nadexp.loggers import log_outcome
from nadexp.reports.hyperplane_figures import cos_violins, mass_and_critical
from nadexp.results.atomic import write_csv_atomic, write_json_atomic
from nadexp.run.context import Run
from nadexp.training.snapshots import SNAPSHOT_PATTERN

log = logging.getLogger(__name__)
TRAINED_COLUMNS = ("filters", "d", "mean", "mass", "p_mass_null", "p_ks_null")
COMPARED_COLUMNS = ("p_ks_init", "p_ks_fresh", "dist_fro", "dist_max")
LAYER_COLUMNS = ("layer", "kind", *TRAINED_COLUMNS, "init_mean", "init_mass", "fresh_mass", *COMPARED_COLUMNS)
FRESH_STREAM = 1  # the fresh random initialisation's stream of the seed (the analysed network's is the seed's own)


def analysed_layers(net: nn.Module, include_linear: bool = False) -> dict[str, nn.Module]:
    """Every conv layer of ``net`` except 1 x 1 ones (and linear layers if asked), by module name."""
    layers = {}
    for name, module in net.named_modules():
        is_conv = isinstance(module, nn.modules.conv._ConvNd) and math.prod(module.kernel_size) > 1
        if is_conv or (include_linear and isinstance(module, nn.Linear)):
            layers[name] = module
    return layers


def filter_cosines(weight: torch.Tensor) -> np.ndarray:
    """cos between each filter's normal (a row of the flattened (out, d) weight) and the identity line."""
    w = weight.detach().flatten(1).double().cpu()
    return (w.sum(1) / (w.norm(dim=1) * math.sqrt(w.shape[1]))).numpy()


def cosine_statistics(cos: np.ndarray, d: int) -> dict:
    """Mean, mass P(cos <= 0), and tests against the null: binomial test of the mass against 0.5 and
    Kolmogorov-Smirnov test of the distribution against N(0, 1/d)."""
    below = int((cos <= 0).sum())
    moments = {"filters": len(cos), "d": d, "mean": float(cos.mean()), "std": float(cos.std()), "mass": below / len(cos)}
    p_mass, p_ks = stats.binomtest(below, len(cos), 0.5).pvalue, stats.kstest(cos, stats.norm(0, 1 / math.sqrt(d)).cdf).pvalue
    return {**moments, "p_mass_null": float(p_mass), "p_ks_null": float(p_ks)}


def distance_from(weight: torch.Tensor, reference: torch.Tensor) -> dict:
    """||W - W0|| / ||W0|| in the Frobenius and the max norm."""
    diff, ref = (weight - reference).double(), reference.double()
    return {"dist_fro": float(diff.norm() / ref.norm()), "dist_max": float(diff.abs().max() / ref.abs().max())}


def find_snapshots(run_dir) -> dict[int, Path]:
    """{completed epochs: checkpoint} of a training run with per-epoch snapshots (callbacks=snapshots)."""
    run_dir = Path(run_dir)
    paths = sorted((run_dir / "snapshots").glob(SNAPSHOT_PATTERN))
    if not run_dir.is_dir() or not paths:
        first = "`python run.py experiment=cifar10 arch=vgg11 callbacks=snapshots`, or set estimator.run_dir=null"
        holds = f"estimator.run_dir={str(run_dir)!r} holds no weight snapshots (snapshots/{SNAPSHOT_PATTERN})"
        raise ConfigError(f"{holds}: train with per-epoch snapshots first, e.g. {first} to analyse a fresh initialisation")
    return {int(re.search(r"(\d+)", p.stem).group(1)): p for p in paths}


@torch.no_grad()
def accuracy(net: nn.Module, batches) -> float:
    correct = total = 0
    for x, y in batches:
        correct += int((net(x).argmax(1) == y).sum())
        total += len(y)
    return correct / total


@torch.no_grad()
def reset_layers(net: nn.Module, layers: list[str], label: str, state: dict, batches, trained_acc: float) -> list[dict]:
    """Test accuracy of ``net`` (eval mode) with each of ``layers`` in turn set to its weights in ``state`` and restored afterwards: one
    evaluation per layer. Rows of {layer, snapshot: label, acc, drop = (acc* - acc) / acc*}, acc* = ``trained_acc``."""
    modules, rows = dict(net.named_modules()), []
    for layer in layers:
        params = dict(modules[layer].named_parameters(recurse=False))
        kept = {name: p.detach().clone() for name, p in params.items()}
        for name, param in params.items():  # a conv or linear layer's weight and bias
            param.copy_(state[f"{layer}.{name}"])
        acc = accuracy(net, batches)
        for name, value in kept.items():
            params[name].copy_(value)
        drop = (trained_acc - acc) / trained_acc if trained_acc > 0 else float("nan")
        rows.append({"layer": layer, "snapshot": label, "acc": acc, "drop": drop})
    return rows


def critical_layers(net: nn.Module, layers: list[str], replacements, batches) -> tuple[float, list[dict]]:
    """The critical-layer table of ``net`` for each of ``replacements`` ((label, state dict) pairs, in order, read
    one at a time): the accuracy acc* of ``net`` as given, then ``reset_layers`` per replacement."""
    net.eval()
    trained_acc = accuracy(net, batches)
    return trained_acc, [row for label, state in replacements for row in reset_layers(net, layers, label, state, batches, trained_acc)]


@dataclass
class HyperplaneEstimator(Estimator):
    """`estimator=hyperplanes` (options in conf/estimator/hyperplanes.yaml)."""

    name: str = "hyperplanes"
    run_dir: Optional[str] = None  # a training run with per-epoch snapshots; None: a fresh initialisation only
    include_linear: bool = False
    critical: bool = True  # the critical-layer analysis (needs run_dir and the run's test data)
    snapshot_stride: int = 1  # critical layers at every k-th snapshot (the last one always)
    test_samples: Optional[int] = None  # evaluate on the first N test samples (None: all)
    seed: int = 0  # the fresh random initialisation
    device: str = "auto"

    def __post_init__(self):
        if self.snapshot_stride < 1:
            raise ConfigError(f"estimator.snapshot_stride must be >= 1, got {self.snapshot_stride}")
        if self.test_samples is not None and self.test_samples < 1:
            raise ConfigError(f"estimator.test_samples must be >= 1 or null (all), got {self.test_samples}")
        self.snapshots = find_snapshots(self.run_dir) if self.run_dir is not None else {}
        if self.snapshots and 0 not in self.snapshots:
            missing = "snapshots/epoch_000.ckpt (the weights at initialisation)"
            raise ConfigError(f"estimator.run_dir={self.run_dir!r} has no {missing}: train it again with callbacks=snapshots")

    def prepare(self, cfg: DictConfig):
        """The data module and network factory: the training run's own (run_dir), or cfg's."""
        return data_and_net_factory(cfg if self.run_dir is None else training_run_config(self.run_dir, cfg))

    def networks(self, make_net, loaded: Optional[dict] = None) -> tuple[nn.Module, nn.Module, nn.Module]:
        """(analysed, its init, a fresh random init): the trained network (the last snapshot of run_dir) and its epoch-0 weights, read from
        ``loaded`` ({epoch: state dict}) where given; without run_dir, a network drawn from the seed's stream, twice the same. The fresh
        init is drawn from a stream of its own, so no seed's fresh network is another seed's analysed one."""
        with drawing_from(seeded(self.seed, FRESH_STREAM)):
            fresh = make_net()
        if not self.snapshots:
            with drawing_from(seeded(self.seed)):
                net = make_net()
            return net, net, fresh
        with drawing_from(seeded(self.seed)):  # their weights are the snapshots'
            net, init = make_net(), make_net()
        loaded = loaded or {}
        for network, epoch in ((net, max(self.snapshots)), (init, 0)):
            network.load_state_dict(loaded[epoch] if epoch in loaded else load_weights(self.snapshots[epoch]))
        return net, init, fresh

    def run(self, run: Run, prepared) -> dict:
        """The trained network against its init, the fresh random init and the null, snapshot by snapshot; the
        critical layers at every snapshot_stride-th snapshot and the last, then with random weights."""
        cfg, output_dir, loggers = run.cfg, run.folder, run.loggers
        datamodule, make_net = prepared
        snapshots = self.snapshots
        loaded = {epoch: load_weights(snapshots[epoch]) for epoch in {0, max(snapshots)}} if snapshots else {}
        net, init, fresh = self.networks(make_net, loaded)
        found = self.weight_statistics(net, init, fresh)
        layer_names = list(found["layers"])
        found["epochs"] = {}
        chosen = set(sorted(snapshots)[:: self.snapshot_stride]) | ({max(snapshots)} if snapshots else set())

        def replacements():  # each snapshot file is read once, for the networks and both analyses
            for epoch, path in sorted(snapshots.items()):
                state = loaded.pop(epoch) if epoch in loaded else load_weights(path)
                found["epochs"][epoch] = snapshot_statistics(state, init, layer_names)
                if epoch in chosen:
                    yield str(epoch), state
            yield "random", fresh.state_dict()

        trained_acc, critical = None, []
        if self.critical and snapshots:  # acc* of the trained network on the test split only
            device = self.resolved_device()
            x, y = datamodule.load("test", device)
            x, y = x[: self.test_samples], y[: self.test_samples]
            size = datamodule.eval_batch_size
            batches = [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]
            trained_acc, critical = critical_layers(net.to(device), layer_names, replacements(), batches)
        else:
            deque(replacements(), maxlen=0)  # the per-snapshot statistics alone
        return self._outputs(cfg, found, trained_acc, critical, output_dir, loggers)

    def _outputs(self, cfg: DictConfig, found: dict, trained_acc, critical: list, output_dir: Path, loggers: list) -> dict:
        rows = []
        for name, s in found["layers"].items():
            head = {"layer": name, "kind": s["kind"], **{k: s["trained"][k] for k in TRAINED_COLUMNS}}
            init = {"init_mean": s["init"]["mean"], "init_mass": s["init"]["mass"], "fresh_mass": s["fresh"]["mass"]}
            rows.append({**head, **init, **{k: s[k] for k in COMPARED_COLUMNS}})
        epoch_rows = [{"epoch": e, "layer": n, **v} for e, layers in found["epochs"].items() for n, v in layers.items()]
        write_csv_atomic(output_dir / "layers.csv", LAYER_COLUMNS, rows)
        write_csv_atomic(output_dir / "epochs.csv", ("epoch", "layer", "mass", "dist_fro", "dist_max"), epoch_rows)
        write_csv_atomic(output_dir / "critical.csv", ("layer", "snapshot", "acc", "drop"), critical)
        write_json_atomic(output_dir / "hyperplanes.json", {**found, "trained_acc": trained_acc, "critical": critical})
        title = f"{cfg.arch_name}: " + (f"trained ({Path(self.run_dir).name})" if self.run_dir else "fresh initialisation")
        figures = cos_violins(found["layers"], output_dir / "cos_violins", title)
        if self.snapshots:
            figures += mass_and_critical(found["epochs"], critical, list(found["layers"]), output_dir / "mass_critical", title)
        pooled, trained = found["pooled"], found["pooled"]["trained"]
        metrics = {"hyperplanes/mass": trained["mass"], "hyperplanes/mean_cos": trained["mean"]}
        metrics["hyperplanes/init_mass"] = pooled["init"]["mass"]
        metrics["hyperplanes/p_mass_null"] = trained["p_mass_null"]
        tables = {"hyperplanes/layers": (LAYER_COLUMNS, [[r[c] for c in LAYER_COLUMNS] for r in rows])}
        if critical:
            metrics["hyperplanes/trained_acc"] = trained_acc
            tables["hyperplanes/critical"] = (("layer", "snapshot", "acc", "drop"), [list(r.values()) for r in critical])
        log_outcome(loggers, cfg, metrics, {f"hyperplanes/{p.stem}": p for p in figures if p.suffix == ".png"}, tables)
        accuracy = f", test acc {trained_acc:.4f}" if trained_acc is not None else ""
        message = "hyperplanes of %s: %d layers, pooled mass %.3f (init %.3f, p vs 0.5 = %.2g)%s -> %s"
        masses = (trained["mass"], pooled["init"]["mass"], trained["p_mass_null"])
        log.info(message, cfg.arch_name, len(rows), *masses, accuracy, output_dir / "hyperplanes.json")
        summary = {k.removeprefix("hyperplanes/"): v for k, v in metrics.items()}
        fields = {"objective": trained["mass"], "summary": summary, "run_dir": self.run_dir, "layers": len(rows)}
        files = ["hyperplanes.json", "layers.csv", "epochs.csv", "critical.csv", *(p.name for p in figures)]
        fields.update(snapshots=sorted(self.snapshots), pooled=pooled, trained_acc=trained_acc, seed=self.seed)
        return {**fields, "files": files}

    def weight_statistics(self, net: nn.Module, init: nn.Module, fresh: nn.Module) -> dict:
        """Per layer: the statistics of ``net``, tests against init and the fresh random init, and distances
        from init; pooled over the layers. ``init`` and ``fresh`` are networks of the same architecture."""
        layers = analysed_layers(net, self.include_linear)
        if not layers:
            hint = "" if self.include_linear else " (estimator.include_linear=true adds linear layers)"
            raise ConfigError(f"{type(net).__name__} has no conv layers larger than 1 x 1 to analyse{hint}")
        init_modules, fresh_modules = dict(init.named_modules()), dict(fresh.named_modules())
        per_layer, pooled = {}, {"trained": [], "init": [], "fresh": []}
        for name, module in layers.items():
            weight, w0 = module.weight, init_modules[name].weight
            cos, cos_init, cos_fresh = (filter_cosines(w) for w in (weight, w0, fresh_modules[name].weight))
            d, cosines = weight[0].numel(), {"trained": cos, "init": cos_init, "fresh": cos_fresh}
            tests = {"p_ks_init": float(stats.ks_2samp(cos, cos_init).pvalue) if not np.array_equal(cos, cos_init) else 1.0}
            tests["p_ks_fresh"] = float(stats.ks_2samp(cos, cos_fresh).pvalue)
            per_layer[name] = {"kind": type(module).__name__, **{key: cosine_statistics(c, d) for key, c in cosines.items()}, **tests}
            per_layer[name].update(distance_from(weight.detach().cpu(), w0.detach().cpu()))
            per_layer[name]["cos"] = {key: c.tolist() for key, c in cosines.items()}
            for key, values in cosines.items():
                pooled[key].append(values)
        summary = {}
        for key, v in pooled.items():
            cos = np.concatenate(v)
            summary[key] = {"filters": len(cos), "mean": float(cos.mean()), "mass": float((cos <= 0).mean())}
        trained = np.concatenate(pooled["trained"])
        summary["trained"]["p_mass_null"] = float(stats.binomtest(int((trained <= 0).sum()), len(trained), 0.5).pvalue)
        return {"layers": per_layer, "pooled": summary}


def snapshot_statistics(state: dict, init: nn.Module, layers: list[str]) -> dict:
    """Mass and distance from init of each of ``layers`` in one snapshot's state dict."""
    init_modules, found = dict(init.named_modules()), {}
    for name in layers:
        weight = state[f"{name}.weight"]
        distance = distance_from(weight, init_modules[name].weight.detach().cpu())
        found[name] = {"mass": float((filter_cosines(weight) <= 0).mean()), **distance}
    return found
