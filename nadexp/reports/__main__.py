"""python -m nadexp.reports DIR [DIR ...] [--out DIR] [--published | --html]: figures and tables of direction sweeps and
CIFAR-10 runs; with --html, one dashboard page of every sweep and estimate below the directories."""

import argparse
import sys
from pathlib import Path

from nadexp.errors import ConfigError
from nadexp.reports.sweep_report import make_report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nadexp.reports", description=__doc__.split(":", 1)[1].strip())
    parser.add_argument(
        "dirs",
        nargs="+",
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
    args = parser.parse_args(argv)
    if args.html:
        from nadexp.reports.dashboard import write_dashboard

        try:
            page = write_dashboard(args.dirs, args.out / "dashboard.html")
        except ConfigError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"dashboard: {page}")
        return 0
    try:
        files = make_report(args.dirs, args.out, published=args.published)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"report of {len(args.dirs)} director{'y' if len(args.dirs) == 1 else 'ies'}: {len(files)} files in {args.out}")
    for path in files:
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
