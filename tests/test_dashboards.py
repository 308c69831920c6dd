"""What runs leave for dashboards: W&B runs (read back from their offline files), TensorBoard event files,
summary metrics, and the local dashboard page, checked in headless Chromium where it is installed."""

import html
import json
import math
import re
import shutil
import subprocess

import numpy as np
import pytest
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nadexp.config import compose_config
from nadexp.data.directions import fourier_cells, signed
from nadexp.reports.__main__ import main as report_main
from nadexp.reports.dashboard import write_dashboard
from nadexp.reports.metrics import ROW_COLUMNS, summary_metrics
from nadexp.reports.published import published_map
from nadexp.run.execute import execute

from conftest import QUICK
from wandb_files import read_run, table

LOGGERS = "logger=[wandb,tensorboard]"
BASE = [o for o in QUICK if not o.startswith(("callbacks", "logger"))]  # a sweep takes no callbacks
SWEEP = [*BASE, "sweep=fourier", "arch=logreg", "dataset.shape=[1,8,8]", "sweep.stride=2", "trainer.max_epochs=2", LOGGERS]


def run(directory, overrides):
    return execute(compose_config(overrides, output_dir=directory), overrides)


def published_like_sweep(directory):
    """A LeNet sweep of the published grid in the real on-disk format, with the published accuracies."""
    cfg = compose_config(["experiment=fourier_lenet"], output_dir=directory)
    (directory / "cells").mkdir(parents=True)
    OmegaConf.save(cfg, directory / "config.yaml", resolve=True)
    published = published_map("lenet")
    for kx, ky in fourier_cells(32, 32, stride=2):
        both = published[signed(ky, 32), signed(kx, 32)] + published[signed(-ky, 32), signed(-kx, 32)]
        record = {
            "arch": "lenet",
            "basis": "fourier",
            "direction": [kx, ky],
            "seed": 0,
            "status": "ok",
            "test_acc": both / 2,
            "train_acc": 1.0,
        }  # the mean of its two published trainings
        (directory / "cells" / f"lenet-fourier-{kx}_{ky}-s0.json").write_text(json.dumps(record))


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """An outputs folder as users have: a NAD estimate, a Fourier sweep, a NAD sweep, a published-grid sweep."""
    root = tmp_path_factory.mktemp("outputs")
    nads = run(root / "nads" / "lenet", ["experiment=nads", "arch=lenet", "dataset.shape=[1,16,16]", "estimator.num_networks=64", LOGGERS])
    fourier = run(root / "sweeps" / "fourier", SWEEP)
    nad = run(
        root / "sweeps" / "nad",
        [
            *BASE,
            "sweep=nad",
            "arch=lenet",
            "dataset.shape=[1,16,16]",
            "trainer.max_epochs=2",
            f"dataset.nads={root / 'nads' / 'lenet'}",
            "sweep.indices=0:256:32",
            "logger=none",
        ],
    )
    published_like_sweep(root / "sweeps" / "published")
    # calibrated on 3 spot checks, which the Fourier sweep above (the same training settings) already holds
    predicted = ["experiment=fourier_predicted", "arch=logreg", "dataset.shape=[1,8,8]", "estimator.num_networks=16", "logger=none"]
    training = ["estimator.spot_checks=3", "dataset.n_train=256", "dataset.n_test=256", "trainer.max_epochs=2"]
    spot_checked = run(root / "predicted" / "logreg", [*predicted, *training, f"paths.log_dir={root}"])  # its NADs go to root/nads/
    assert {c["source"] for c in spot_checked["spot_checks"]} == {str(root / "sweeps" / "fourier")}  # reused, none trained
    return {"root": root, "nads": nads, "fourier": fourier, "nad": nad}


def wandb_run(directory):
    (run_dir,) = (directory / "wandb").glob("offline-run-*")
    return read_run(run_dir)


def test_a_sweeps_wandb_run_holds_its_config_cells_summary_and_numeric_table(outputs):
    result, wb = outputs["fourier"], wandb_run(outputs["root"] / "sweeps" / "fourier")
    assert (wb["job_type"], wb["group"]) == ("sweep", "logreg")
    config = wb["config"]
    assert (config["arch_name"], config["task"], config["basis"], config["seed"]) == ("logreg", "sweep", "fourier", 0)
    assert config["dataset"]["eps"] == 2.0 and config["trainer"]["max_epochs"] == 2  # protocol constants as keys
    cells = [row for row in wb["history"] if "cell/test_acc" in row]
    assert [row["cells_done"] for row in cells] == list(range(1, 11)) and cells[-1]["progress"] == 1
    for key, value in result["summary"].items():
        assert wb["summary"][f"sweep/{key}"] == pytest.approx(value)
    assert {"sweep/learned_90", "sweep/learned_75", "sweep/low_mean_test_acc"} <= set(wb["summary"])
    columns, data = table(wb, "sweep/cells_table")
    assert tuple(columns) == ROW_COLUMNS["fourier"] and len(data) == 10
    for row in (dict(zip(columns, values)) for values in data):
        assert (row["f_rows"], row["f_cols"]) == (signed(row["ky"], 8), signed(row["kx"], 8))
        assert row["abs_freq"] == pytest.approx(math.hypot(row["f_rows"], row["f_cols"]), abs=1e-4)
        assert isinstance(row["test_acc"], float)
    assert list((wb["files"] / "media" / "images" / "sweep").glob("heatmap_*.png"))


def test_a_nad_estimates_wandb_run_holds_overlaps_and_spectrum_decay(outputs):
    wb = wandb_run(outputs["root"] / "nads" / "lenet")
    assert (wb["job_type"], wb["group"]) == ("nads", "lenet")
    summary = wb["summary"]
    assert 0 <= summary["nads/overlap_top1"] <= 1 and 1 <= summary["nads/components_90"] <= 64
    assert 1 <= summary["nads/effective_rank"] <= 64 and 0 < summary["nads/eigenvalue_ratio_10"] <= 1
    columns, data = table(wb, "nads/spectrum_table")
    eigenvalues = np.load(outputs["root"] / "nads" / "lenet" / "eigenvalues.npy")
    assert columns == ["nad_index", "eigenvalue"] and np.allclose([row[1] for row in data], eigenvalues)


def test_a_nad_index_sweep_reports_where_its_curve_falls_and_its_area():
    cells = [{"basis": "nad", "direction": [i], "status": "ok", "test_acc": acc} for i, acc in zip((0, 2, 4, 6), (1.0, 0.9, 0.7, 0.8))]
    summary = summary_metrics(cells, "nad", (1, 8, 8))
    assert summary["first_index_below_75"] == 4
    assert summary["auc"] == pytest.approx((0.95 + 0.8 + 0.75) * 2 / 6)
    assert summary["learned_90"] == 0.5 and summary["learned_75"] == 0.75
    never = summary_metrics([{**cell, "test_acc": 0.99} for cell in cells], "nad", (1, 8, 8))
    assert never["first_index_below_75"] == 7  # past the last swept index


def test_a_fourier_summary_counts_the_low_window_only_within_it():
    cells = [{"basis": "fourier", "direction": [kx, 0], "status": "ok", "test_acc": 1.0 if kx <= 6 else 0.5} for kx in range(0, 17)]
    summary = summary_metrics(cells, "fourier", (1, 32, 32))
    assert summary["low_mean_test_acc"] == 1.0 and summary["learned_90"] == pytest.approx(7 / 17)


def test_tensorboard_gets_the_figures_scalars_and_hparams(outputs):
    events = EventAccumulator(
        str(outputs["root"] / "sweeps" / "fourier" / "tensorboard"), size_guidance={"images": 0, "scalars": 0, "tensors": 0}
    )
    events.Reload()
    tags = events.Tags()
    assert "sweep/heatmap" in tags["images"]
    assert {"sweep/mean_test_acc", "sweep/learned_90", "cell/test_acc"} <= set(tags["scalars"])
    assert events.Scalars("sweep/mean_test_acc")[-1].value == pytest.approx(outputs["fourier"]["mean_test_acc"])
    hparams = events.PluginTagToContent("hparams")
    assert hparams and any(b"sweep/mean_test_acc" in content for content in hparams.values())


def test_the_dashboard_page_holds_every_panel_and_works_offline(outputs, tmp_path):
    page = write_dashboard([outputs["root"]], tmp_path / "dashboard.html")
    text = page.read_text()
    assert text.count("<script") == 1 + text.count('class="plotly-graph-div"')  # plotly.js once, then one per figure
    # heat maps (trained and predicted), NAD curve, leading NADs of both estimates, spectra, published
    assert text.count('class="plotly-graph-div"') == 6
    assert not re.search(r"<script[^>]*\bsrc=|<link[^>]*\bhref=", text)  # nothing fetched: one file, offline
    assert text.count("<tr>") == 1 + 6  # summary table: 3 sweeps, 2 NAD estimates, 1 predicted map
    assert "test acc %{z:.4f}" in text  # each heat-map cell's accuracy on hover
    assert text.count("spot check: f_rows %{y}") == 1  # the predicted map's trained cells, ringed
    assert "against the published lenet map: 130 directions, mean absolute difference 0.0 points" in text


def test_the_report_command_writes_the_page_or_names_what_is_missing(outputs, tmp_path, capsys):
    assert report_main([str(outputs["root"] / "sweeps"), "--html", "--out", str(tmp_path)]) == 0
    assert f"dashboard: {tmp_path / 'dashboard.html'}" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert report_main([str(empty), "--html", "--out", str(tmp_path / "none")]) == 2
    assert "no direction sweep" in capsys.readouterr().err and not (tmp_path / "none").exists()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(page, *args):
    """Loads ``page`` in headless Chromium; returns (rendered DOM, console messages)."""
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=15000",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout, [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium)")
def test_the_dashboard_renders_in_a_real_browser_without_console_errors(outputs, tmp_path):
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    assert chromium(broken, "--dump-dom")[1]  # the check sees a page's errors

    page = write_dashboard([outputs["root"]], tmp_path / "dashboard.html")
    dom, console = chromium(page, "--dump-dom")
    assert console == []
    assert len(re.findall(r'<div [^>]*class="plotly-graph-div js-plotly-plot"', dom)) == 6  # plotly drew every figure
    assert "Fourier heat maps, trained and predicted from NADs" in dom and "logreg-predicted" in dom
    shot = tmp_path / "dashboard.png"
    chromium(page, f"--screenshot={shot}", "--window-size=1400,2600")
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]
    heatmap_band = pixels[300:900]  # below the heading and the summary table: the heat maps
    assert len(np.unique((heatmap_band * 255).astype(int).reshape(-1, 3), axis=0)) > 100  # colour, not a blank page


def test_the_dashboard_lists_failed_runs_beside_the_finished_ones(tmp_path):
    published_like_sweep(tmp_path / "sweeps" / "cut_short")  # a sweep that failed after recording its cells
    reasons = {"sweeps/cut_short": "SystemExit: 143", "nads/lenet": "RuntimeError: CUDA error", "runs/lenet": "ValueError: <nan> & co"}
    for run, reason in reasons.items():
        task = {"sweeps": "sweep", "nads": "nads", "runs": "train"}[run.split("/")[0]]
        record = {"task": task, "arch": "lenet", "seed": 0, "status": "failed", "reason": reason, "wall_time_s": 1.5, "machine": {}}
        (tmp_path / run).mkdir(parents=True, exist_ok=True)
        (tmp_path / run / "result.json").write_text(json.dumps(record))
    page = write_dashboard([tmp_path], tmp_path / "dashboard.html")
    text = page.read_text()
    assert "Failed runs (3)" in text and "3 failed run(s)" in text
    for run, reason in reasons.items():
        assert f"<td>{run}</td>" in text and html.escape(reason) in text, run
    assert text.count("<td>failed</td>") == 1  # the failed sweep's row in the summary; its heat map is still drawn
    assert 'class="plotly-graph-div"' in text
    if CHROMIUM:  # and a browser shows the table
        dom, console = chromium(page, "--dump-dom")
        assert console == [] and "Failed runs (3)" in dom and "RuntimeError: CUDA error" in dom


def sweep_on_disk(directory, arch, shape, stride, max_frequency=None, seed=0):
    """A Fourier sweep in the real on-disk format (config.yaml, cells/), accuracies falling with frequency."""
    settings = [f"arch={arch}", f"dataset.shape=[{','.join(map(str, shape))}]", f"sweep.stride={stride}"]
    settings += [f"sweep.max_frequency={max_frequency}"] if max_frequency is not None else []
    cfg = compose_config(["experiment=single", "sweep=fourier", *settings], output_dir=directory)
    (directory / "cells").mkdir(parents=True)
    OmegaConf.save(cfg, directory / "config.yaml", resolve=True)
    rng, (_, height, width) = np.random.default_rng(seed), shape
    for kx, ky in fourier_cells(height, width, stride=stride, max_frequency=max_frequency):
        falling = 0.85 - 0.4 * math.hypot(signed(kx, width), signed(ky, height)) / (width / 2) + rng.normal(0, 0.02)
        accuracy = 1.0 if arch == "logreg" else float(np.clip(falling, 0.48, 1.0))
        record = {"arch": arch, "basis": "fourier", "direction": [kx, ky], "seed": 0, "status": "ok", "test_acc": accuracy}
        (directory / "cells" / f"{arch}-fourier-{kx}_{ky}-s0.json").write_text(json.dumps(record))


def figure_layout(dom: str) -> list[dict]:
    """Per heat-map figure that the browser drew: its width, plot areas (x, y, width, height), colour bars' left
    edges and tick labels, read off the SVG that plotly rendered."""
    figures = []
    for segment in dom.split('<div class="figure"')[1:]:
        if 'class="hm"' not in segment:
            continue
        number = r"([-\d.]+)"
        area = rf'class="nsewdrag drag"[^>]*x="{number}" y="{number}" width="{number}" height="{number}"'
        areas = [tuple(map(float, a)) for a in re.findall(area, segment)]
        bar = rf'<g class="[^"]*colorbar" transform="translate\({number},{number}\)">.*?<rect class="cbbg" x="{number}"'
        origins = re.findall(bar, segment)
        ticks = re.findall(r'class="[xy]tick"[^>]*><text[^>]*>([^<]*)<', segment)
        figures.append(
            {
                "width": float(re.search(rf'<svg class="main-svg"[^>]*width="{number}"', segment).group(1)),
                "height": float(re.search(rf'<svg class="main-svg"[^>]*height="{number}"', segment).group(1)),
                "areas": areas,
                "colour_bars": [float(x) + float(bar) for x, _, bar in origins],
                "ticks": [t.replace("\u2212", "-") for t in ticks],
            }
        )
    return figures


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium)")
def test_every_heat_map_is_drawn_the_same_way_across_the_pages_width(tmp_path):
    demo = tmp_path / "demo"  # the demo's 13 cells of LeNet and logistic regression: frequencies 0, +-4, +-8
    for arch in ("lenet", "logreg"):
        sweep_on_disk(demo / arch, arch, (1, 32, 32), 4, 8)
    five = tmp_path / "five"  # five archs, two maps predicted from NADs, a failed run
    for seed, arch in enumerate(("logreg", "lenet", "lenet_nopool", "resnet18")):
        sweep_on_disk(five / "sweeps" / arch, arch, (1, 16, 16), 2, seed=seed)
    sweep_on_disk(five / "sweeps" / "vgg11", "vgg11", (1, 32, 32), 4, 8)
    for arch in ("lenet", "logreg"):
        predicted = ["experiment=fourier_predicted", f"arch={arch}", "dataset.shape=[1,16,16]", "estimator.num_networks=16"]
        run(five / "predicted" / arch, [*predicted, "estimator.spot_checks=0", "logger=none", f"paths.log_dir={five}"])
    (five / "runs" / "lenet").mkdir(parents=True)
    failed = {"task": "train", "arch": "lenet", "seed": 0, "status": "failed", "reason": "SystemExit: 143", "machine": {}}
    (five / "runs" / "lenet" / "result.json").write_text(json.dumps(failed))

    window = 1400
    for root, maps in ((demo, 2 + 2 * 3), (five, 7 + 2 * 8)):  # heat maps, published comparisons, leading NADs
        page = write_dashboard([root], tmp_path / f"{root.name}.html")
        dom, console = chromium(page, "--dump-dom", f"--window-size={window},1800")
        figures = figure_layout(dom)
        assert console == [] and sum(len(f["areas"]) for f in figures) == maps, root.name
        for figure in figures:
            assert figure["width"] > 0.9 * (window - 80), figure["width"]  # as wide as the page
            rows = {y: h for _, y, _, h in figure["areas"]}
            assert sum(rows.values()) > 0.7 * (figure["height"] - 120), figure  # maps, not blank space (margins 70 + 50)
            assert all(re.fullmatch(r"-?\d+", tick) for tick in figure["ticks"]), figure["ticks"]  # integer frequencies
            for bar in figure["colour_bars"]:  # right beside the panel to its left
                assert min(bar - (x + w) for x, _, w, _ in figure["areas"] if x + w <= bar + 1) < 30, (bar, figure["areas"])
        if root is demo:  # the same 5 x 5 window of square cells on its frequencies, wherever a map is drawn
            assert all(abs(w - h) < 2 for figure in figures for _, _, w, h in figure["areas"])
            assert {tick for figure in figures for tick in figure["ticks"]} == {"-8", "-4", "0", "4", "8"}
        else:
            assert "Failed runs (1)" in dom and "lenet-predicted" in dom and "logreg-predicted" in dom
