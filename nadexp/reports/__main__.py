"""python -m nadexp.reports DIR [DIR ...] [--out DIR] [--published | --html] | --predict NADS [--suggest K] [--calibrate CELLS] [--against
SWEEP]: figures and tables of direction sweeps and CIFAR-10 runs; with --html, one dashboard page of every sweep and estimate below the
directories; with --predict, the Fourier map that NADs made anywhere predict, scored against trained maps: --suggest K lists K directions to
train (OUT/spot_checks.csv), --calibrate fits the arch's own calibration to trained ones."""

import argparse
import csv
import sys
from pathlib import Path

from nadexp.data.directions import signed
from nadexp.errors import ConfigError
from nadexp.reports.calibration import MIN_CELLS
from nadexp.reports.prediction import ABSOLUTE, CALIBRATIONS, DEFAULT_PREDICTOR
from nadexp.reports.prediction_report import cell_key
from nadexp.reports.sweep_report import is_sweep_dir, load_sweep, make_report
from nadexp.run.writable import check_writable

COLUMNS = "CSV with columns f_rows, f_cols, test_acc"
PREDICT_OPTIONS = {
    "--predict": dict(type=Path, metavar="NADS", help="a nads.npy, or a directory holding one, with eigenvalues.npy beside it"),
    "--against": dict(
        type=Path, action="append", default=[], metavar="SWEEP", help="a trained Fourier sweep directory to score against (repeatable)"
    ),
    "--shape": dict(help="C,H,W of the images the NADs are for, when nads.npy holds flat rows (default: from the NADs or SWEEP)"),
    "--arch": dict(help="the arch the NADs are of (lenet, logreg: also scored against the published map; default: result.json's)"),
    "--eigenvalues": dict(type=Path, metavar="NPY", help="the NADs' eigenvalues (default: eigenvalues.npy beside nads.npy)"),
    "--singular-values": dict(type=Path, metavar="NPY", help="or their singular values (default: singular_values.npy beside it)"),
    "--networks": dict(
        type=int, help="networks the NADs come from, for singular values and an absolute --predictor (log_scaled_variance, log_variance)"
    ),
    "--predictor": dict(default=DEFAULT_PREDICTOR, help=f"the score: {', '.join(CALIBRATIONS)} (default %(default)s)"),
    "--suggest": dict(type=int, metavar="K", help="write OUT/spot_checks.csv: K directions to train, in order (f_rows, f_cols, score)"),
    "--calibrate": dict(
        type=Path,
        metavar="CELLS",
        help="trained cells (a sweep directory, or a CSV with f_rows, f_cols, test_acc as fractions) to fit the arch's own calibration to",
    ),
    "--stride": dict(type=int, default=2, help="every n-th frequency (default %(default)s: the published grid)"),
    "--phase": dict(default="cosine", choices=("cosine", "sine"), help="the Fourier waves' phase, as dataset.fourier_phase"),
}


def predict(args) -> dict:
    from nadexp.reports.prediction import predict_fourier_map
    from nadexp.reports.prediction_report import calibrated, read_nads, write_prediction, write_spot_checks

    if args.predictor not in CALIBRATIONS:
        raise ConfigError(f"--predictor {args.predictor} is unknown: choose one of {', '.join(CALIBRATIONS)}")
    if args.stride < 1:
        raise ConfigError(f"--stride must be >= 1, got {args.stride}")
    if args.suggest is not None and args.suggest < 0:
        raise ConfigError(f"--suggest K: K must be >= 0 (directions to train), got {args.suggest}")
    against = [load_sweep(path) for path in args.against]
    fallback = tuple(against[0]["shape"]) if against else None
    shape = _shape(args.shape) if args.shape else None
    absolute = args.predictor in ABSOLUTE
    nads, spectrum, record = read_nads(args.predict, shape, args.networks, fallback, args.eigenvalues, args.singular_values, absolute)
    shape, arch = nads.shape[1:], args.arch or record.get("arch")
    predicted = predict_fourier_map(nads, spectrum, shape, args.stride, None, args.phase, args.predictor)
    title = f"{arch or args.predict.name}: predicted from its NADs ({args.predictor})"
    grid = [tuple(r["direction"]) for r in predicted]
    known = trained_cells(args.calibrate, shape, grid) if args.calibrate else {}
    if args.suggest is not None:
        write_spot_checks(args.out, predicted, shape, args.suggest, CALIBRATIONS[args.predictor], known)
    if known:
        predicted, own = calibrated(predicted, known, shape, f"{len(known)} trained cells of {args.calibrate}")
        title = f"{arch or args.predict.name}: calibrated on {len(known)} trained directions"
        curve = f"slope {own.curve.slope}, centre {own.curve.centre}, noise {own.noise:.3f}"
        print(f"calibration fitted to {len(known)} trained cells: {curve}")
    return write_prediction(args.out, predicted, shape, args.stride, title, against, arch)


def trained_cells(path, shape, grid: list[tuple[int, int]], option: str = "--calibrate") -> dict:
    """{cell key: test accuracy} of the trained cells in ``path`` (a sweep directory, or a CSV with columns f_rows,
    f_cols, test_acc as fractions) that calibrate a predicted map on ``grid`` (cell keys); checked: on the grid,
    fractions, at least two. The keys are cell_key's: a direction and its conjugate are one."""
    path, (_, height, width) = Path(path), shape
    if path.is_dir():
        if not is_sweep_dir(path):
            raise ConfigError(f"{option} {path}: not a sweep directory (config.yaml and cells/) nor a {COLUMNS}")
        sweep = load_sweep(path)
        if sweep["basis"] != "fourier" or list(sweep["shape"]) != list(shape):
            kind = f"a {sweep['basis']} sweep of images of shape {sweep['shape']}"
            raise ConfigError(f"{option} {path}: {kind}, not a Fourier sweep of {list(shape)}")
        ok = [r for r in sweep["cells"] if r.get("status") == "ok" and r.get("test_acc") is not None]
        found = [(tuple(r["direction"]), r["test_acc"]) for r in ok]
    else:
        try:
            with path.open(newline="") as file:
                rows = list(csv.DictReader(file))
            found = [((int(r["f_cols"]) % width, int(r["f_rows"]) % height), float(r["test_acc"])) for r in rows]
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"{option} {path}: cannot be read ({error.__class__.__name__}): give a sweep directory or a CSV") from None
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{option} {path}: not a {COLUMNS} (numbers, one row per trained cell)") from None
    on_grid, cells = {cell_key(direction, height, width) for direction in grid}, {}
    for direction, accuracy in found:
        key = cell_key(direction, height, width)
        if key not in on_grid:
            cell = f"f_rows={signed(direction[1], height)}, f_cols={signed(direction[0], width)}"
            raise ConfigError(f"{option} {path}: the cell {cell} is not on the grid of the predicted map (see --stride)")
        cells[key] = accuracy
    if cells and max(cells.values()) > 1:
        hint = " (they look like percentages: divide by 100)" if max(cells.values()) <= 100 else ""
        raise ConfigError(f"{option} {path}: test_acc must be fractions from 0 to 1, got up to {max(cells.values())}{hint}")
    if cells and min(cells.values()) < 0:
        raise ConfigError(f"{option} {path}: test_acc must be fractions from 0 to 1, got {min(cells.values())}")
    if len(cells) < MIN_CELLS:
        raise ConfigError(f"{option} {path}: {len(cells)} trained cell(s) on the grid; a calibration needs at least {MIN_CELLS}")
    return cells


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"--shape {text}: give C,H,W, e.g. 1,32,32")
    return shape


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nadexp.reports", description=__doc__.split(":", 1)[1].strip())
    runs = "run directories of sweep=fourier|pixel|nad runs, and/or directories holding CIFAR-10 runs (e.g. outputs/cifar10)"
    parser.add_argument("dirs", nargs="*", type=Path, help=runs)
    parser.add_argument("--out", type=Path, default=Path("outputs/reports/latest"), help="where the report goes")
    published = "also draw each Fourier sweep of lenet or logreg beside the published heat map and their difference, with a per-cell table"
    parser.add_argument("--published", action="store_true", help=published + " and summary")
    html = "write OUT/dashboard.html instead: one self-contained page comparing every sweep and estimate found below the directories"
    parser.add_argument("--html", action="store_true", help=html + " (e.g. outputs)")
    prediction = parser.add_argument_group("--predict: a Fourier map predicted from NADs (docs/predicted_maps.md)")
    for flag, options in PREDICT_OPTIONS.items():
        prediction.add_argument(flag, **options)
    args = parser.parse_args(argv)
    for flag in ("against", "suggest", "calibrate"):
        if getattr(args, flag) not in (None, []) and not args.predict:
            parser.error(f"--{flag} works on a predicted map: give --predict NADS too")
    if not args.dirs and not args.predict:
        parser.error("give run directories to report on, or --predict NADS")
    try:
        check_writable(args.out, "--out")  # before any figure is drawn
        print(_report(args))
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def _report(args) -> str:
    """Writes what ``args`` ask for; returns the lines that say where it went."""
    if args.predict:
        scored = predict(args)
        return f"predicted map of {args.predict} ({len(scored)} trained maps compared): {args.out}"
    if args.html:
        from nadexp.reports.dashboard import write_dashboard

        return f"dashboard: {write_dashboard(args.dirs, args.out / 'dashboard.html')}"
    files = make_report(args.dirs, args.out, published=args.published)
    lines = [f"report of {len(args.dirs)} director{'y' if len(args.dirs) == 1 else 'ies'}: {len(files)} files in {args.out}"]
    return "\n".join([*lines, *(f"  {path}" for path in files)])


if __name__ == "__main__":
    sys.exit(main())
