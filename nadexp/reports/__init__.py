"""Figures, tables and dashboards of runs, drawn to files with matplotlib's file-only backend, chosen here without
importing matplotlib: Hydra builds this package's multirun callback when every command starts."""

import os
import sys

os.environ["MPLBACKEND"] = "Agg"  # what matplotlib reads when it is imported
if "matplotlib" in sys.modules:  # imported already (a notebook, a script): switched now
    sys.modules["matplotlib"].use("Agg")
