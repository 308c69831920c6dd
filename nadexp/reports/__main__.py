"""python -m nadexp.reports SWEEP_DIR [SWEEP_DIR ...] [--out DIR]: figures and tables of direction sweeps."""

import argparse
import sys
from pathlib import Path

from nadexp.errors import ConfigError
from nadexp.reports.sweep_report import make_report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nadexp.reports", description=__doc__.split(":", 1)[1].strip())
    parser.add_argument("sweep_dirs", nargs="+", type=Path, help="run directories of sweep=fourier|pixel|nad runs")
    parser.add_argument("--out", type=Path, default=Path("outputs/reports/latest"), help="where the report goes")
    args = parser.parse_args(argv)
    try:
        files = make_report(args.sweep_dirs, args.out)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"report of {len(args.sweep_dirs)} sweep(s): {len(files)} files in {args.out}")
    for path in files:
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
