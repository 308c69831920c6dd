from nadexp.sweeps.summary import SweepSummary, collect_results

__all__ = ["SweepSummary", "collect_results"]
