"""A local dashboard: one self-contained HTML page (plotly inline: no server, opens offline) comparing every
sweep and estimate under a directory; its panels are listed in docs/outputs.md."""

import html
import os
from datetime import datetime
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from nadexp.data.directions import conjugate, signed
from nadexp.data.nad_file import eigenvalues_of, load_nads
from nadexp.errors import ConfigError
from nadexp.reports.comparison import comparable, match_directions, summarise
from nadexp.reports.heatmap import centred, fourier_grid
from nadexp.reports.metrics import cell_rows, summary_metrics
from nadexp.reports.nad_figures import spectrum_summary
from nadexp.reports.prediction_report import load_prediction
from nadexp.reports.published import published_map
from nadexp.reports.sweep_report import is_sweep_dir, load_sweep
from nadexp.results.atomic import write_text_atomic
from nadexp.results.schema import is_failed, read_record_or_warn
from nadexp.run.tasks import ESTIMATORS

SKIPPED = {"wandb", "tensorboard", "csv", ".hydra", "cells", "checkpoints", "snapshots", "report"}
LEADING_NADS = 8
ACCURACY_SCALE = dict(colorscale="Viridis", cmin=0.5, cmax=1.0, colorbar=dict(title="test acc"))


def find_runs(root: Path) -> tuple[list[dict], list[dict], list[dict]]:
    """(sweeps, estimates, failed) below ``root``: sweep directories (nadexp.reports.sweep_report.load_sweep),
    finished estimator runs (their result.json, with ``dir``) and runs of any task whose result.json says failed
    (with ``dir``; a failed sweep is among the sweeps as well, with the cells it recorded)."""
    sweeps, estimates, failed = [], [], []
    for directory in sorted(_directories(Path(root))):
        result = None
        if (directory / "result.json").is_file():
            result = read_record_or_warn(directory / "result.json")  # an unreadable one is left out, with a warning
        if is_failed(result):
            failed.append({**result, "dir": directory})
        if is_sweep_dir(directory):
            status = "unfinished" if result is None else result.get("status", "finished")  # unfinished: running, or killed
            sweeps.append({**load_sweep(directory), "status": status})
        elif result is not None and result.get("task") in ESTIMATORS and not is_failed(result):
            estimates.append({**result, "dir": directory})
    return sweeps, estimates, failed


def _directories(root: Path):
    yield root
    for child in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in SKIPPED):
        yield from _directories(child)


def summary_rows(sweeps: list[dict], estimates: list[dict], root: Path) -> list[dict]:
    rows = []
    for sweep in sweeps:
        summary = summary_metrics(sweep["cells"], sweep["basis"], sweep["shape"], sweep["eigenvalues"])
        run, task, seed = _relative(sweep["dir"], root), f"sweep ({sweep['basis']})", sweep["config"].get("seed")
        head = dict(run=run, task=task, arch=sweep["arch"], seed=seed)
        rows.append({**head, "status": sweep["status"], **summary})
    for estimate in estimates:
        summary = estimate.get("summary") or {}
        if not summary and estimate["task"] == "nads":  # a run from before summaries were stored
            summary = spectrum_summary(eigenvalues_of(estimate["dir"]))
        head = dict(run=_relative(estimate["dir"], root), task=estimate["task"], arch=estimate.get("arch"), seed=estimate.get("seed"))
        rows.append({**head, "status": "finished", **{k: v for k, v in summary.items() if k != "gradient_time_s"}})
    return rows


def _relative(path: Path, root: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(root)) if path != root else path.name


def summary_table(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(row.get(c))}</td>" for c in columns) + "</tr>" for row in rows)
    return f'<div class="wide"><table class="summary"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else html.escape(str(value))


def sweep_window(sweep: dict):
    """A sweep's map as every heat map of the page draws it: (image [f_rows, f_cols], f_rows, f_cols), the swept
    frequencies with DC at the centre (nadexp.reports.heatmap.centred), and the axes that go with it."""
    _, height, width = sweep["shape"]
    image, fy, fx = centred(fourier_grid(sweep["cells"], height, width), sweep["stride"])
    return image, fy, fx


def frequency_axes(fig: go.Figure, fy, fx, row: int, col: int) -> None:
    """Square cells centred on the swept frequencies, integer ticks on them (every other one past 9)."""
    for update, values, title in ((fig.update_xaxes, fx, "f_cols (kx)"), (fig.update_yaxes, fy, "f_rows (ky)")):
        ticks = [int(v) for v in values][:: 1 if len(values) <= 9 else 2]
        update(tickmode="array", tickvals=ticks, title_text=title, title_standoff=4, row=row, col=col, constrain="domain")
    anchor = fig.get_subplot(row, col).xaxis.plotly_name.replace("axis", "")  # square cells: y scaled as its x
    fig.update_yaxes(autorange="reversed", scaleanchor=anchor, row=row, col=col)


def map_trace(image, fy, fx, name: str, value: str = "test acc", **style) -> go.Heatmap:
    hover = f"f_rows (ky) %{{y}}, f_cols (kx) %{{x}}<br>{value} %{{z:.4f}}<extra>{html.escape(name)}</extra>"
    return go.Heatmap(z=image, x=fx, y=fy, name=name, hovertemplate=hover, **(style or {"coloraxis": "coloraxis"}))


def colour_bar(fig: go.Figure, col: int, title: str) -> dict:
    """A colour bar right beside the panel in column ``col`` of the first row."""
    domain = fig.get_subplot(1, col).xaxis.domain
    return dict(title=title, x=domain[1] + 0.005, xanchor="left", len=1.0, thickness=14)


def heatmaps(sweeps: list[dict]) -> tuple[go.Figure, float]:
    """Every Fourier sweep's heat map (trained or predicted), side by side on one colour scale; (figure, width/height)."""
    cols = min(len(sweeps), 4)
    rows = -(-len(sweeps) // cols)
    fig = make_subplots(rows, cols, subplot_titles=[s["name"] for s in sweeps], horizontal_spacing=0.07, vertical_spacing=0.24 / rows)
    for index, sweep in enumerate(sweeps):
        row, col = index // cols + 1, index % cols + 1
        image, fy, fx = sweep_window(sweep)
        fig.add_trace(map_trace(image, fy, fx, sweep["name"]), row, col)
        _, height, width = sweep["shape"]
        spots = [d for c in sweep.get("spot_checks", []) for d in (c["direction"], conjugate(*c["direction"], height, width))]
        if spots:  # the cells a predicted map was calibrated on, trained
            marker = {"symbol": "circle-open", "size": 11, "color": "red", "line": {"width": 2}}
            x, y = [signed(x, width) for x, _ in spots], [signed(y, height) for _, y in spots]
            hover = "spot check: f_rows %{y}, f_cols %{x}<extra></extra>"
            trace = go.Scatter(x=x, y=y, mode="markers", marker=marker, name="spot checks (trained)", hovertemplate=hover, showlegend=False)
            fig.add_trace(trace, row, col)
        frequency_axes(fig, fy, fx, row, col)
    fig.update_layout(coloraxis={**ACCURACY_SCALE, "colorbar": colour_bar(fig, cols, "test acc")}, title="Fourier heat maps (test acc)")
    return fig, cols / (rows * 1.1)


def nad_curves(sweeps: list[dict]) -> tuple[go.Figure, float]:
    fig = go.Figure()
    for sweep in sweeps:
        columns, rows = cell_rows(sweep["cells"], "nad", sweep["shape"], sweep["eigenvalues"])
        ok = [row for row in rows if row["status"] == "ok"]
        x, y = [r["nad_index"] for r in ok], [r["test_acc"] for r in ok]
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=sweep["name"], hovertemplate="NAD %{x}<br>test acc %{y:.4f}"))
    fig.update_layout(title="Test accuracy along the NADs", xaxis_title="NAD index", yaxis_title="test accuracy", yaxis_range=[0.45, 1.02])
    return fig, 3.0


def leading_nads(estimate: dict) -> tuple[go.Figure, float]:
    nads = load_nads(estimate["dir"], option="the dashboard's NADs")[:LEADING_NADS, 0]
    fig = make_subplots(1, len(nads), subplot_titles=[f"u{i}" for i in range(len(nads))], horizontal_spacing=0.01)
    for index, nad in enumerate(nads):
        limit, hover = float(np.abs(nad).max()) or 1.0, "row %{y}, col %{x}<br>%{z:.4f}<extra></extra>"
        fig.add_trace(go.Heatmap(z=nad, zmin=-limit, zmax=limit, colorscale="RdBu", showscale=False, hovertemplate=hover), 1, index + 1)
    fig.update_yaxes(autorange="reversed", showticklabels=False)
    fig.update_xaxes(showticklabels=False)
    fig.update_layout(title=f"{estimate.get('arch')}: leading NADs ({Path(estimate['dir']).name})")
    return fig, len(nads) / 1.25


def spectra(estimates: list[dict]) -> tuple[go.Figure, float]:
    fig = go.Figure()
    for estimate in estimates:
        values = eigenvalues_of(estimate["dir"])
        values = values[values > values.max() * 1e-12]  # past the rank of the gradients: numerical zeros
        fig.add_trace(go.Scatter(y=values, mode="lines", name=Path(estimate["dir"]).name, hovertemplate="NAD %{x}<br>eigenvalue %{y:.4g}"))
    fig.update_layout(title="NAD spectra", xaxis_title="NAD index", yaxis_title="eigenvalue", yaxis_type="log")
    return fig, 3.0


def published_panel(sweep: dict) -> tuple[go.Figure, float]:
    """The sweep's map, the published one on the same cells and their difference, drawn as the heat maps above."""
    published = published_map(sweep["arch"])
    overall = summarise(match_directions(sweep["cells"], published))["all"]
    reproduced, fy, fx = sweep_window(sweep)
    theirs = np.array([[published.get((int(y), int(x)), np.nan) for x in fx] for y in fy])
    titles = [f"{sweep['name']} (reproduced)", f"published {sweep['arch']}", "reproduced - published (points)"]
    fig = make_subplots(1, 3, subplot_titles=titles, horizontal_spacing=0.1)
    fig.add_trace(map_trace(reproduced, fy, fx, sweep["name"]), 1, 1)
    fig.add_trace(map_trace(theirs, fy, fx, f"published {sweep['arch']}"), 1, 2)
    difference = dict(colorscale="RdBu_r", zmin=-30, zmax=30, colorbar=colour_bar(fig, 3, "points"))
    fig.add_trace(map_trace(100 * (reproduced - theirs), fy, fx, "difference", "points", **difference), 1, 3)
    for col in (1, 2, 3):
        frequency_axes(fig, fy, fx, 1, col)
    title = f"{sweep['name']} against the published {sweep['arch']} map: {overall['directions']} directions, "
    title += f"mean absolute difference {overall['mean_abs_difference']} points, correlation {overall['correlation'] or 'n/a'}"
    fig.update_layout(coloraxis={**ACCURACY_SCALE, "colorbar": colour_bar(fig, 2, "test acc")}, title=title)
    return fig, 3.2


def dashboard_sections(sweeps: list[dict], estimates: list[dict], failed: list[dict], root: Path) -> list[tuple[str, str]]:
    """(heading, HTML) per panel; figures as plotly divs that the page's one copy of plotly.js draws."""
    sections = [("Summary", summary_table(summary_rows(sweeps, estimates, root)))] if sweeps or estimates else []
    if failed:  # beside the finished ones, so a dashboard never hides a run that stopped
        keys = ("task", "arch", "seed", "wall_time_s", "reason")  # what it was, how long it ran and why it stopped
        rows = [{"run": _relative(run["dir"], root), **{key: run.get(key) for key in keys}} for run in failed]
        sections.append((f"Failed runs ({len(failed)})", summary_table(rows)))
    figures, fourier = [], [s for s in sweeps if s["basis"] == "fourier"]
    predicted = [load_prediction(e["dir"]) for e in estimates if e["task"] == "fourier_prediction" and (e["dir"] / "cells.csv").is_file()]
    if fourier or predicted:  # each arch's predicted map right after its trained ones, same shape first
        maps = sorted(fourier + predicted, key=lambda s: (str(s["arch"]), s["shape"], s.get("predicted", False), s["name"]))
        figures.append(("Fourier heat maps, trained and predicted from NADs" if predicted else "Fourier heat maps", heatmaps(maps)))
    nad = [s for s in sweeps if s["basis"] == "nad"]
    if nad:
        figures.append(("NAD-index curves", nad_curves(nad)))
    nads = [e for e in estimates if e["task"] == "nads" and (e["dir"] / "nads.npy").is_file()]
    figures += [(f"Leading NADs: {e.get('arch')}", leading_nads(e)) for e in nads]
    if nads:
        figures.append(("NAD spectra", spectra(nads)))
    figures += [(f"Published comparison: {s['name']}", published_panel(s)) for s in fourier if comparable(s)]
    for heading, (figure, ratio) in figures:  # as wide as the page, as tall as the panels' shape asks
        figure.update_layout(margin=dict(l=60, r=70, t=70, b=50), template="plotly_white")
        div = figure.to_html(full_html=False, include_plotlyjs=False, config={"responsive": True}, default_height="100%")
        sections.append((heading, f'<div class="figure" style="aspect-ratio: {ratio:.3f}">{div}</div>'))
    return sections


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
table.summary {{ border-collapse: collapse; font-size: 0.85em; }}
table.summary th, table.summary td {{ border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }}
table.summary td:first-child, table.summary th:first-child {{ text-align: left; }}
section {{ margin-bottom: 2em; }}
div.wide {{ overflow-x: auto; }}
div.figure {{ width: 100%; min-height: 260px; }}
</style>
<script type="text/javascript">{plotly}</script>
</head><body>
<h1>{title}</h1>
<p>{count} generated {when} by <code>python -m nadexp.reports {root} --html</code>.</p>
{sections}
</body></html>
"""


def write_dashboard(roots, path: Path) -> Path:
    """Writes the page for every run below the directories ``roots`` to ``path``; refuses when there is none."""
    roots = [Path(root) for root in roots]
    for root in roots:
        if not root.is_dir():
            raise ConfigError(f"{root} is not a directory")
    found = [find_runs(root) for root in roots]
    sweeps, estimates, failed = ([run for runs in found for run in runs[kind]] for kind in range(3))
    if not sweeps and not estimates and not failed:
        kinds = f"no direction sweep (config.yaml and cells/), no estimate (result.json of estimator={'|'.join(ESTIMATORS)})"
        raise ConfigError(f"nothing to show: {kinds} and no failed run below {', '.join(map(str, roots))}")
    base = Path(os.path.commonpath([root.resolve() for root in roots]))
    panels = dashboard_sections(sweeps, estimates, failed, base)
    sections = "\n".join(f"<section><h2>{html.escape(heading)}</h2>\n{body}</section>" for heading, body in panels)
    count = f"{len(sweeps)} sweep(s), {len(estimates)} estimate(s), {len(failed)} failed run(s);"
    when = datetime.now().strftime("%Y-%m-%d %H:%M")
    title, root = f"nadexp: {html.escape(base.name)}", html.escape(" ".join(map(str, roots)))
    page = PAGE.format(title=title, plotly=get_plotlyjs(), count=count, when=when, root=root, sections=sections)
    write_text_atomic(path, page)
    return Path(path)
