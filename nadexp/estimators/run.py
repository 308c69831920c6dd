"""An estimator run: estimate, save arrays, tables and figures, log them, write result.json."""

import logging
import time
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from nadexp.errors import ConfigError
from nadexp.estimators.class_density import ClassDensityEstimator
from nadexp.estimators.hyperplanes import HyperplaneEstimator, accuracy, load_weights, reset_layers, snapshot_statistics
from nadexp.estimators.nads import NADEstimator, save_nads, spectrum_summary
from nadexp.estimators.representations import resolve_stages, stage_representations, svd_reduce
from nadexp.loggers import build_loggers, finish_loggers, log_config, log_outcome
from nadexp.reports.class_density_figures import between_class_kl, kl_vs_log_density, sorted_log_density
from nadexp.reports.hyperplane_figures import cos_violins, mass_and_critical
from nadexp.reports.nad_figures import nad_figures
from nadexp.results import machine, open_run_dir, package_versions, write_csv_atomic, write_json_atomic

log = logging.getLogger(__name__)


def prepare_estimate(cfg: DictConfig):
    """Every check an estimate can fail on its config (options, run directories, checkpoints, files), before
    anything is written: the estimator and what its run step needs."""
    estimator = instantiate(cfg.estimator)
    prepare, _ = STEPS[type(estimator)]
    return estimator, prepare(estimator, cfg)


def estimate(cfg: DictConfig, prepared=None) -> dict:
    """Runs ``cfg.estimator``; result.json's ``objective`` is what run.py returns to Hydra sweepers."""
    estimator, inputs = prepared or prepare_estimate(cfg)
    _, run = STEPS[type(estimator)]
    output_dir = open_run_dir(cfg)
    loggers = build_loggers(cfg)
    start = time.perf_counter()
    try:
        log_config(loggers, cfg)
        outcome = run(estimator, cfg, output_dir, loggers, inputs)
    finally:
        finish_loggers(loggers)
    result = {"task": cfg.task, "arch": cfg.arch_name, **outcome, "wall_time_s": round(time.perf_counter() - start, 3),
              "versions": package_versions(), "machine": machine()}
    write_json_atomic(output_dir / "result.json", result)
    return result


def prepare_nads(estimator: NADEstimator, cfg: DictConfig):
    shape = tuple(cfg.dataset.shape)
    make_net = lambda: instantiate(cfg.arch, input_shape=shape, num_classes=1)  # noqa: E731
    make_net()  # a bad arch config fails here
    return make_net


def run_nads(estimator: NADEstimator, cfg: DictConfig, output_dir: Path, loggers, make_net) -> dict:
    shape = tuple(cfg.dataset.shape)
    found = estimator.estimate(make_net, shape)
    save_nads(output_dir, found)
    figures = nad_figures(found["nads"], found["eigenvalues"], output_dir, label=f"({cfg.arch_name}, {estimator.method})")
    spectrum = spectrum_summary(found["eigenvalues"])
    metrics = {f"nads/overlap_{key}": value for key, value in found["diagnostic"].items()}
    metrics.update({f"nads/{key}": value for key, value in spectrum.items()}, **{"nads/gradient_time_s": found["gradient_time_s"]})
    images = {f"nads/{name.removesuffix('.png')}": path for name, path in figures.items()}
    table = (("nad_index", "eigenvalue"), [[index, float(value)] for index, value in enumerate(found["eigenvalues"])])
    log_outcome(loggers, cfg, metrics, images, {"nads/spectrum_table": table})
    device = estimator.resolved_device()
    log.info("%s NADs of %s from %d networks in %.1f s; split-half overlap %s -> %s", estimator.method, cfg.arch_name,
             estimator.num_networks, found["total_time_s"], found["diagnostic"], output_dir / "nads.npy")
    return {
        "method": estimator.method, "num_networks": estimator.num_networks, "eval_point": estimator.eval_point,
        "scale": estimator.scale if estimator.method == "finite_difference" else None, "seed": estimator.seed,
        "shape": list(shape), "dtype": str(estimator.resolved_dtype(device)).removeprefix("torch."), "device": str(device),
        "num_components": len(found["nads"]), "diagnostic": {"split_half_overlap": found["diagnostic"]},
        "summary": {key.removeprefix("nads/"): value for key, value in metrics.items()},
        "objective": found["diagnostic"].get("top10"),
        "top_eigenvalues": [round(float(v), 8) for v in found["eigenvalues"][:10]],
        "gradient_time_s": found["gradient_time_s"],
        "files": ["nads.npy", "eigenvalues.npy", "singular_values.npy", *figures],
    }


LAYER_COLUMNS = ("layer", "kind", "filters", "d", "mean", "mass", "p_mass_null", "p_ks_null", "init_mean", "init_mass",
                 "fresh_mass", "p_ks_init", "p_ks_fresh", "dist_fro", "dist_max")


def run_hyperplanes(estimator: HyperplaneEstimator, cfg: DictConfig, output_dir: Path, loggers, prepared) -> dict:
    """The trained network (last snapshot of estimator.run_dir) against its init (epoch 0), a fresh random
    init and the null; without run_dir, a fresh initialisation of cfg.arch against another one."""
    datamodule, make_net = prepared
    torch.manual_seed(estimator.seed + 1)
    fresh = make_net()
    if estimator.run_dir is None:
        torch.manual_seed(estimator.seed)
        net = init = make_net()
        snapshots = {}
    else:
        snapshots = estimator.snapshots
        net, init = make_net(), make_net()
        loaded = {0: load_weights(snapshots[0]), max(snapshots): load_weights(snapshots[max(snapshots)])}
        net.load_state_dict(loaded[max(snapshots)])
        init.load_state_dict(loaded[0])
    found = estimator.weight_statistics(net, init, fresh)
    layer_names = list(found["layers"])

    trained_acc, critical = None, []
    if estimator.critical and snapshots:  # acc* of the trained network; the resets follow, snapshot by snapshot
        device = estimator.resolved_device()
        x, y = datamodule.load("test", device)  # the test split only
        x, y = x[:estimator.test_samples], y[:estimator.test_samples]
        batches = [(x[i:i + datamodule.eval_batch_size], y[i:i + datamodule.eval_batch_size]) for i in range(0, len(x), datamodule.eval_batch_size)]
        trained_acc = accuracy(net.to(device).eval(), batches)
        chosen = set(sorted(snapshots)[::estimator.snapshot_stride]) | {max(snapshots)}
    found["epochs"] = {}
    for epoch, path in sorted(snapshots.items()):  # each snapshot file is read once, for both analyses
        state = loaded[epoch] if epoch in loaded else load_weights(path)
        found["epochs"][epoch] = snapshot_statistics(state, init, layer_names)
        if trained_acc is not None and epoch in chosen:
            critical += reset_layers(net, layer_names, str(epoch), state, batches, trained_acc)
    if trained_acc is not None:
        critical += reset_layers(net, layer_names, "random", fresh.state_dict(), batches, trained_acc)

    rows = [{"layer": name, "kind": s["kind"], **{k: s["trained"][k] for k in ("filters", "d", "mean", "mass", "p_mass_null", "p_ks_null")},
             "init_mean": s["init"]["mean"], "init_mass": s["init"]["mass"], "fresh_mass": s["fresh"]["mass"],
             **{k: s[k] for k in ("p_ks_init", "p_ks_fresh", "dist_fro", "dist_max")}} for name, s in found["layers"].items()]
    epoch_rows = [{"epoch": e, "layer": n, **v} for e, layers in found["epochs"].items() for n, v in layers.items()]
    write_csv_atomic(output_dir / "layers.csv", LAYER_COLUMNS, rows)
    write_csv_atomic(output_dir / "epochs.csv", ("epoch", "layer", "mass", "dist_fro", "dist_max"), epoch_rows)
    write_csv_atomic(output_dir / "critical.csv", ("layer", "snapshot", "acc", "drop"), critical)
    write_json_atomic(output_dir / "hyperplanes.json", {**found, "trained_acc": trained_acc, "critical": critical})
    title = f"{cfg.arch_name}: " + (f"trained ({Path(estimator.run_dir).name})" if estimator.run_dir else "fresh initialisation")
    figures = cos_violins(found["layers"], output_dir / "cos_violins", title)
    if snapshots:
        figures += mass_and_critical(found["epochs"], critical, layer_names, output_dir / "mass_critical", title)

    pooled = found["pooled"]
    metrics = {"hyperplanes/mass": pooled["trained"]["mass"], "hyperplanes/mean_cos": pooled["trained"]["mean"],
               "hyperplanes/init_mass": pooled["init"]["mass"], "hyperplanes/p_mass_null": pooled["trained"]["p_mass_null"]}
    tables = {"hyperplanes/layers": (LAYER_COLUMNS, [[r[c] for c in LAYER_COLUMNS] for r in rows])}
    if critical:
        metrics["hyperplanes/trained_acc"] = trained_acc
        tables["hyperplanes/critical"] = (("layer", "snapshot", "acc", "drop"), [list(r.values()) for r in critical])
    log_outcome(loggers, cfg, metrics, {f"hyperplanes/{p.stem}": p for p in figures if p.suffix == ".png"}, tables)
    log.info("hyperplanes of %s: %d layers, pooled mass %.3f (init %.3f, p vs 0.5 = %.2g)%s -> %s", cfg.arch_name,
             len(rows), pooled["trained"]["mass"], pooled["init"]["mass"], pooled["trained"]["p_mass_null"],
             f", test acc {trained_acc:.4f}" if trained_acc is not None else "", output_dir / "hyperplanes.json")
    return {"objective": pooled["trained"]["mass"], "summary": {k.removeprefix("hyperplanes/"): v for k, v in metrics.items()},
            "run_dir": estimator.run_dir, "layers": len(rows), "snapshots": sorted(snapshots), "pooled": pooled,
            "trained_acc": trained_acc, "seed": estimator.seed,
            "files": ["hyperplanes.json", "layers.csv", "epochs.csv", "critical.csv", *(p.name for p in figures)]}


def training_run_config(run_dir, cfg: DictConfig) -> DictConfig:
    """The saved config of the training run in ``run_dir``, checked to be of ``cfg``'s arch."""
    saved = Path(run_dir) / "config.yaml"
    if not saved.is_file():
        raise ConfigError(f"estimator.run_dir={str(run_dir)!r} has no config.yaml: give the directory of a training run")
    source = OmegaConf.load(saved)
    if not all(key in source for key in ("arch", "dataset", "arch_name")):
        raise ConfigError(f"estimator.run_dir={str(run_dir)!r}: its config.yaml is not a training run's (no arch or dataset)")
    if source.get("arch_name") != cfg.arch_name:
        raise ConfigError(f"estimator.run_dir={str(run_dir)!r} holds a {source.get('arch_name')} run, but arch={cfg.arch_name}: "
                          f"add arch={source.get('arch_name')}")
    return source


def data_and_net_factory(source: DictConfig):
    datamodule = instantiate(source.dataset)
    return datamodule, lambda: instantiate(source.arch, input_shape=datamodule.input_shape, num_classes=datamodule.num_classes)


def prepare_hyperplanes(estimator: HyperplaneEstimator, cfg: DictConfig):
    """The data module and network factory: the training run's own (run_dir), or cfg's."""
    return data_and_net_factory(cfg if estimator.run_dir is None else training_run_config(estimator.run_dir, cfg))


def prepare_class_density(estimator: ClassDensityEstimator, cfg: DictConfig):
    """The training run's data module, its trained network and the stage names; scores if given."""
    if estimator.run_dir is None:
        raise ConfigError("estimator=class_density needs estimator.run_dir: the directory of a trained run "
                          "(e.g. outputs/cifar10/resnet18-cifar10-plain-s0 from `python run.py experiment=cifar10 arch=resnet18`)")
    datamodule, make_net = data_and_net_factory(training_run_config(estimator.run_dir, cfg))
    checkpoint = Path(estimator.checkpoint) if estimator.checkpoint not in ("last", "best") else \
        Path(estimator.run_dir) / "checkpoints" / f"{estimator.checkpoint}.ckpt"
    if not checkpoint.is_file():
        raise ConfigError(f"estimator.checkpoint={estimator.checkpoint!r}: {checkpoint} does not exist (train with "
                          "callbacks=checkpoints, as experiment=cifar10 does, or give the path of a checkpoint)")
    net = make_net()
    net.load_state_dict(load_weights(checkpoint))
    stages = resolve_stages(net, estimator.stages)
    scores = None
    if estimator.scores:
        try:
            scores = np.load(estimator.scores, allow_pickle=False).astype(np.float64).ravel()
        except (OSError, ValueError) as error:
            raise ConfigError(f"estimator.scores={estimator.scores!r} is not a readable .npy file ({error})") from None
    return datamodule, net, stages, scores


CLASS_COLUMNS = ("stage", "class", "name", "n", "mean", "std", "kl_diagonal", "within_distance", "components", "converged", "group")


def run_class_density(estimator: ClassDensityEstimator, cfg: DictConfig, output_dir: Path, loggers, prepared) -> dict:
    datamodule, net, stages, scores = prepared
    images, labels = datamodule.load("train")  # the training examples only; batches go to the device one by one
    images, labels = images[:estimator.max_examples], labels[:estimator.max_examples].cpu().numpy()
    if scores is not None and len(scores) < len(labels):
        raise ConfigError(f"estimator.scores has {len(scores)} values for {len(labels)} training examples")
    scores = scores[:len(labels)] if scores is not None else None
    start = time.perf_counter()
    representations = stage_representations(net, stages, images, estimator.batch_size, estimator.resolved_device())
    extraction_s = time.perf_counter() - start
    reduced, spectra = {}, {}
    for index, stage in enumerate(stages):
        reduced[stage], _, singular_values = svd_reduce(representations[stage], estimator.dim_of(index))
        reduced[stage] = reduced[stage].numpy()
        spectra[stage] = singular_values.tolist()
    start = time.perf_counter()
    found = estimator.analyse(reduced, labels, scores)
    fitting_s = time.perf_counter() - start

    names = getattr(datamodule, "class_names", None)
    np.save(output_dir / "log_density.npy", np.stack([found["log_density"][s] for s in stages]))
    np.save(output_dir / "labels.npy", labels)
    report = {"stages": found["stages"], "stage_names": stages, "singular_values": spectra, "density": estimator.density,
              "density_note": "variational Dirichlet-process Gaussian mixture (scikit-learn), a substitute for the paper's "
                              "collapsed Gibbs sampler" if estimator.density == "dp_mixture" else "one Gaussian per class",
              "examples": int(len(labels)), "extraction_s": round(extraction_s, 3), "fitting_s": round(fitting_s, 3)}
    write_json_atomic(output_dir / "class_density.json", report)
    rows = [{"stage": stage, "class": c, "name": names[c] if names else c, **values,
             "group": "high" if c in found["stages"][stage]["split"]["high"] else "low"}
            for stage in stages for c, values in found["stages"][stage]["classes"].items()]
    write_csv_atomic(output_dir / "classes.csv", CLASS_COLUMNS, rows)
    title = f"{cfg.arch_name}: class-conditional densities ({estimator.density})"
    figures = sorted_log_density(found["stages"], output_dir / "sorted_log_density", title, names)
    figures += kl_vs_log_density(found["stages"], output_dir / "kl_vs_log_density", title)
    figures += between_class_kl(found["stages"], output_dir / "between_class_kl", title, names)

    metrics = {f"class_density/{stage}/{key}": found["stages"][stage]["split"][key] for stage in stages for key in ("gap", "gap_z")}
    tables = {"class_density/classes": (CLASS_COLUMNS, [[r[c] for c in CLASS_COLUMNS] for r in rows])}
    log_outcome(loggers, cfg, metrics, {f"class_density/{p.stem}": p for p in figures if p.suffix == ".png"}, tables)
    splits = {stage: {k: found["stages"][stage]["split"][k] for k in ("gap", "gap_z", "meaningful", "high", "low")} for stage in stages}
    log.info("class densities of %s over %d examples: extraction %.1f s, fitting %.1f s; splits %s -> %s", cfg.arch_name,
             len(labels), extraction_s, fitting_s, {s: round(v["gap_z"], 1) for s, v in splits.items()}, output_dir / "class_density.json")
    return {"objective": splits[stages[-1]]["gap_z"], "summary": {k.removeprefix("class_density/"): v for k, v in metrics.items()},
            "run_dir": estimator.run_dir, "stages": stages,
            "density": estimator.density, "examples": int(len(labels)), "splits": splits,
            "extraction_s": round(extraction_s, 3), "fitting_s": round(fitting_s, 3),
            "files": ["class_density.json", "log_density.npy", "labels.npy", "classes.csv", *(p.name for p in figures)]}


# Each estimator's two steps: prepare (checks, writes nothing) and run (estimates, writes its files).
STEPS = {NADEstimator: (prepare_nads, run_nads), HyperplaneEstimator: (prepare_hyperplanes, run_hyperplanes),
         ClassDensityEstimator: (prepare_class_density, run_class_density)}
