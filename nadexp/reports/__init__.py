"""Figures, tables and dashboards of runs, drawn to files: matplotlib's file-only backend, chosen here, before any
module of the package imports pyplot."""

import matplotlib

matplotlib.use("Agg")
