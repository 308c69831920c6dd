"""`estimator=fourier_prediction`: the Fourier heat map that an arch's NADs predict, with no training (nadexp.reports.prediction), scored
against every trained map there is for it (nadexp.reports.prediction_report). It holds a NAD estimator, built from estimator=nads's options
beside its own; the NADs live where experiment=nads keeps them (nadexp.run.identity.nads_run_dir): reused when finished, else estimated
there first, for later runs too."""

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import numpy as np
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from nadexp.data.directions import fourier_cells, signed
from nadexp.data.nad_file import eigenvalues_of, load_nads
from nadexp.data.settings import FOURIER_PHASES
from nadexp.errors import ConfigError
from nadexp.estimators.base import Estimator
from nadexp.estimators.nads import NADEstimator
from nadexp.estimators.run import estimate
from nadexp.loggers import log_outcome
from nadexp.reports.calibration import spot_check
from nadexp.reports.prediction import CALIBRATIONS, predict_fourier_map
from nadexp.reports.prediction_report import calibrated, cell_key, write_prediction
from nadexp.reports.sweep_report import load_sweep
from nadexp.results import claims
from nadexp.results.resume import check_same_config
from nadexp.results.schema import finished_record
from nadexp.run.context import Run
from nadexp.run.identity import nads_run_dir

log = logging.getLogger(__name__)
NADS_POLL_S = 2.0  # how often a job looks again at NADs that another process is estimating


def _finished(nads_dir: Path) -> bool:
    return (nads_dir / "nads.npy").is_file() and finished_record(nads_dir / "result.json") is not None


def nads_config(cfg: DictConfig, nads: NADEstimator) -> DictConfig:
    """``cfg`` as the experiment=nads run of ``nads``: estimator=nads with its options, no logger (this run logs)."""
    nads_cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    with open_dict(nads_cfg):
        nads_cfg.estimator = {"_target_": f"{NADEstimator.__module__}.{NADEstimator.__name__}", **asdict(nads)}
        nads_cfg.task = "nads"
        nads_cfg.logger = None
        nads_cfg.resume = False
    return nads_cfg


class FourierPrediction(Estimator):
    """`estimator=fourier_prediction` (options in conf/estimator/fourier_prediction.yaml; ``nad_options`` are
    estimator=nads's, conf/estimator/nads.yaml, and build ``self.nads``)."""

    def __init__(
        self, name="fourier_prediction", predictor="log_relative_to_best", stride=2, max_frequency: Optional[int] = None,
        against: Optional[str] = None, spot_checks=6, **nad_options,
    ):  # fmt: skip
        self.name, self.predictor, self.stride, self.max_frequency = name, predictor, stride, max_frequency
        self.against, self.spot_checks = against, spot_checks
        self.nads = NADEstimator(**nad_options)
        self.device = self.nads.device
        if not (isinstance(self.spot_checks, int) and not isinstance(self.spot_checks, bool) and self.spot_checks >= 0):
            raise ConfigError(f"estimator.spot_checks must be an integer >= 0 (directions to train; 0: none), got {self.spot_checks!r}")
        if self.predictor not in CALIBRATIONS:
            raise ConfigError(f"estimator.predictor={self.predictor!r} is unknown: choose one of {', '.join(CALIBRATIONS)}")
        if not (isinstance(self.stride, int) and self.stride >= 1):
            raise ConfigError(f"estimator.stride must be an integer >= 1, got {self.stride!r}")
        if self.max_frequency is not None and not (isinstance(self.max_frequency, int) and self.max_frequency >= 0):
            raise ConfigError(f"estimator.max_frequency must be an integer >= 0 or null (all), got {self.max_frequency!r}")

    def prepare(self, cfg: DictConfig) -> dict:
        """Where the NADs are (and whether they are there yet), the network factory, the trained map to score
        against; a bad arch, NAD option or sweep directory fails here, before anything is written."""
        phase = OmegaConf.select(cfg, "dataset.fourier_phase", default="cosine")
        if phase not in FOURIER_PHASES:
            raise ConfigError(f"dataset.fourier_phase={phase!r} is unknown: choose one of {', '.join(FOURIER_PHASES)}")
        nads_cfg = nads_config(cfg, self.nads)
        overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
        nads_dir = nads_run_dir(nads_cfg, overrides)
        with open_dict(nads_cfg):
            nads_cfg.paths.output_dir = str(nads_dir)
        check_same_config(nads_cfg, nads_dir, "nads")  # a directory of other NADs is never read as these
        make_net = self.nads.prepare(nads_cfg)
        if self.nads.method != "finite_difference":
            only = "only finite-difference NADs were found to predict trained maps (docs/predicted_maps.md)"
            log.warning("estimator.method=%s: %s", self.nads.method, only)
        against = [load_sweep(Path(self.against))] if self.against else []
        for sweep in against:
            if sweep["basis"] != "fourier" or list(sweep["shape"]) != list(cfg.dataset.shape):
                found = f"a {sweep['basis']} sweep of images of shape {sweep['shape']}"
                wanted = f"give a Fourier sweep of dataset.shape={list(cfg.dataset.shape)}"
                raise ConfigError(f"estimator.against={self.against} is {found}: {wanted}")
            if sweep["arch"] != cfg.arch_name:
                log.warning("estimator.against=%s is a sweep of %s, not of %s", self.against, sweep["arch"], cfg.arch_name)
        grid = fourier_cells(*cfg.dataset.shape[1:], self.stride, self.max_frequency)
        if self.spot_checks > len(grid):
            raise ConfigError(f"estimator.spot_checks={self.spot_checks} is more than the {len(grid)} directions of the map's grid")
        # with spot checks, nadexp.sweeps.spot_checks adds train_cells and sweep_dir
        return dict(nads_cfg=nads_cfg, nads_dir=nads_dir, reuse=_finished(nads_dir), make_net=make_net, against=against, phase=phase)

    def calibrate(self, predicted: list[dict], shape, prepared: dict) -> tuple[list[dict], object, list[dict]]:
        """The map calibrated on ``spot_checks`` trained cells: the spread picks first, then (with their results)
        those where the fitted curve is least certain; each trained (or reused) as the arch's sweep trains its
        cells, by ``prepared["train_cells"]`` (directions -> {direction: cell record}, nadexp.sweeps.spot_checks)."""
        _, height, width = shape
        scores, trained = [r["score"] for r in predicted], {}

        def train(picks: list[int]) -> dict[int, float]:
            directions = [predicted[i]["direction"] for i in picks]
            log.info("spot checks: %d directions %s", len(picks), directions)
            records = prepared["train_cells"](directions)
            for i, direction in zip(picks, directions):
                record = records.get(tuple(direction)) or {"reason": "no record"}
                if record.get("status") != "ok":
                    raise ConfigError(f"spot check {direction} did not train ({record.get('reason')}): see {prepared['sweep_dir']}")
                trained[i] = record
            return {i: trained[i]["test_acc"] for i in picks}

        spot_check(scores, self.spot_checks, CALIBRATIONS[self.predictor], train)
        cells = {cell_key(predicted[i]["direction"], height, width): r["test_acc"] for i, r in trained.items()}
        calibrated_map, own = calibrated(predicted, cells, shape, f"{len(cells)} spot checks")
        fitted = "calibration fitted to %d spot checks: slope %s, centre %s, noise %.3f"
        log.info(fitted, len(cells), own.curve.slope, own.curve.centre, own.noise)
        listed = []
        for i, r in trained.items():
            (x, y), score = predicted[i]["direction"], predicted[i]["score"]
            place = {"direction": [x, y], "f_rows": signed(y, height), "f_cols": signed(x, width), "score": score}
            listed.append({**place, "test_acc": r["test_acc"], "wall_time_s": r.get("wall_time_s"), "source": r["source"]})
        return calibrated_map, own, listed

    def _estimate_once(self, cfg: DictConfig, prepared: dict) -> None:
        """The NADs estimated into their folder once: a job that needs them while another estimates them waits (a claim)."""
        nads_dir = prepared["nads_dir"]
        claim = nads_dir.parent / f".{nads_dir.name}.claim"
        claim.parent.mkdir(parents=True, exist_ok=True)
        waiting = False
        while not claims.claim(claim):
            if not waiting:
                log.info("NADs of %s are being estimated into %s by another process: waiting for them", cfg.arch_name, nads_dir)
            waiting = True
            time.sleep(NADS_POLL_S)
        try:
            if not _finished(nads_dir):  # else another process finished them just before this claim
                log.info("NADs of %s not found with these settings: estimating them into %s", cfg.arch_name, nads_dir)
                estimate(Run.start(prepared["nads_cfg"], "nads"), (self.nads, prepared["make_net"]))
        finally:
            claim.unlink(missing_ok=True)

    def run(self, run: Run, prepared: dict) -> dict:
        cfg, output_dir, loggers = run.cfg, run.folder, run.loggers
        shape, nads_dir = tuple(cfg.dataset.shape), prepared["nads_dir"]
        start = time.perf_counter()
        if prepared["reuse"]:
            log.info("NADs reused from %s", nads_dir)
        else:
            self._estimate_once(cfg, prepared)
        nads_time = time.perf_counter() - start
        nads_dtype = (finished_record(nads_dir / "result.json") or {}).get("dtype")
        log.info("NADs of %s in %s (%s)", cfg.arch_name, nads_dtype, nads_dir)  # the map follows their precision: said, not silent
        nads, eigenvalues = load_nads(nads_dir, shape), eigenvalues_of(nads_dir)
        start = time.perf_counter()
        predicted = predict_fourier_map(nads, eigenvalues, shape, self.stride, self.max_frequency, prepared["phase"], self.predictor)
        title = f"{cfg.arch_name}: predicted from its NADs ({self.predictor})"
        predict_time = time.perf_counter() - start
        start, spot_checks, own = time.perf_counter(), [], None
        if self.spot_checks:
            predicted, own, spot_checks = self.calibrate(predicted, shape, prepared)
            title = f"{cfg.arch_name}: predicted, calibrated on {len(spot_checks)} trained directions"
        spot_check_time = time.perf_counter() - start
        start = time.perf_counter()
        scored = write_prediction(output_dir, predicted, shape, self.stride, title, prepared["against"], cfg.arch_name)
        predict_time += time.perf_counter() - start
        summary = {"mean_test_acc": round(float(np.mean([r["test_acc"] for r in predicted])), 6)}
        summary.update({f"{name}/{key}": value for name, numbers in scored.items() for key, value in numbers.items() if value is not None})
        images = {"predicted/heatmap": output_dir / "heatmap.png"}
        images.update({f"predicted/{p.stem}": p for p in (output_dir / f"against_{name}.png" for name in scored) if p.is_file()})
        log_outcome(loggers, cfg, {f"predicted/{k}": v for k, v in summary.items()}, images, {})
        first = next(iter(scored.values()), {})
        calibration = own.as_dict() if own else CALIBRATIONS[self.predictor].as_dict()
        fields = dict(objective=first.get("pearson"), summary=summary, seed=self.nads.seed, basis="fourier", shape=list(shape))
        fields.update(predictor=self.predictor, calibration=calibration, spot_checks=spot_checks)
        fields.update(spot_check_sweep_dir=prepared.get("sweep_dir"), spot_check_time_s=round(spot_check_time, 3))
        fields.update(stride=self.stride, max_frequency=self.max_frequency)
        fields.update(fourier_phase=prepared["phase"], cells=len(predicted), nads_dir=str(nads_dir), nads_reused=prepared["reuse"])
        fields.update(nads_dtype=nads_dtype, scores=scored, nads_time_s=round(nads_time, 3), prediction_time_s=round(predict_time, 3))
        against = [f"against_{name}.{ext}" for name in scored for ext in ("png", "csv")]
        return {**fields, "files": ["heatmap.png", "heatmap.pdf", "cells.csv", "scores.json", *against]}
