"""python -m nadexp.reports DIR [DIR ...] [--out DIR] [--published | --html] | --predict NADS [--against SWEEP]: figures and
tables of direction sweeps and CIFAR-10 runs; with --html, one dashboard page of every sweep and estimate below the
directories; with --predict, the Fourier map that NADs made anywhere predict, scored against trained maps."""

import argparse
import sys
from pathlib import Path

from nadexp.errors import ConfigError
from nadexp.reports.prediction import ABSOLUTE, CALIBRATIONS, DEFAULT_PREDICTOR
from nadexp.reports.sweep_report import make_report
from nadexp.writable import check_writable

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
    "--stride": dict(type=int, default=2, help="every n-th frequency (default %(default)s: the published grid)"),
    "--phase": dict(default="cosine", choices=("cosine", "sine"), help="the Fourier waves' phase, as dataset.fourier_phase"),
}


def predict(args) -> dict:
    from nadexp.reports.prediction import predict_fourier_map
    from nadexp.reports.prediction_report import read_nads, write_prediction
    from nadexp.reports.sweep_report import load_sweep

    if args.predictor not in CALIBRATIONS:
        raise ConfigError(f"--predictor {args.predictor} is unknown: choose one of {', '.join(CALIBRATIONS)}")
    if args.stride < 1:
        raise ConfigError(f"--stride must be >= 1, got {args.stride}")
    against = [load_sweep(path) for path in args.against]
    fallback = tuple(against[0]["shape"]) if against else None
    shape = _shape(args.shape) if args.shape else None
    absolute = args.predictor in ABSOLUTE
    nads, spectrum, record = read_nads(args.predict, shape, args.networks, fallback, args.eigenvalues, args.singular_values, absolute)
    shape, arch = nads.shape[1:], args.arch or record.get("arch")
    predicted = predict_fourier_map(nads, spectrum, shape, args.stride, None, args.phase, args.predictor)
    title = f"{arch or args.predict.name}: predicted from its NADs ({args.predictor})"
    return write_prediction(args.out, predicted, shape, args.stride, title, against, arch)


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
    parser.add_argument(
        "dirs",
        nargs="*",
        type=Path,
        help="run directories of sweep=fourier|pixel|nad runs, and/or directories holding CIFAR-10 runs (e.g. outputs/cifar10)",
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/reports/latest"), help="where the report goes")
    parser.add_argument(
        "--published",
        action="store_true",
        help="also draw each Fourier sweep of lenet or logreg "
        "beside the published heat map and their difference, with a per-cell table and summary",
    )
    parser.add_argument(
        "--html",
        action="store_true",
        help="write OUT/dashboard.html instead: one self-contained page "
        "comparing every sweep and estimate found below the directories (e.g. outputs)",
    )
    prediction = parser.add_argument_group("--predict: a Fourier map predicted from NADs (docs/predicted_maps.md)")
    for flag, options in PREDICT_OPTIONS.items():
        prediction.add_argument(flag, **options)
    args = parser.parse_args(argv)
    if args.against and not args.predict:
        parser.error("--against scores a predicted map: give --predict NADS too")
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
