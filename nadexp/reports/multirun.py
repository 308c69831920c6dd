"""After a multirun: one table of every job's result.json, printed and saved as summary.csv."""

from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

COLUMNS = ("job", "arch", "basis", "direction", "variant", "nad_index", "seed", "train_acc", "test_acc", "wall_time_s", "status")


def collect_results(sweep_dir: Path) -> list[dict]:
    """One row per job directory of a sweep; jobs without a readable result.json are marked failed."""
    from nadexp.results.schema import read_record_or_warn  # imports torch: not when Hydra builds the callback

    rows = []
    job_dirs = sorted((p for p in Path(sweep_dir).iterdir() if (p / ".hydra").is_dir()), key=lambda p: (len(p.name), p.name))
    for job_dir in job_dirs:
        row, result_path = {"job": job_dir.name, "status": "failed"}, job_dir / "result.json"
        result = read_record_or_warn(result_path) if result_path.is_file() else None
        if result is not None:
            if result.get("task") == "sweep":  # a whole direction sweep: its cell count and mean accuracy
                result.update(direction=f"{result['cells']} cells", test_acc=result["mean_test_acc"])
            row.update({k: v for k, v in result.items() if k in COLUMNS}, status=result.get("status", "ok"))
        rows.append(row)
    return rows


class MultirunSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        # Imported when a multirun ends, not when Hydra builds this callback: they import torch and matplotlib.
        from nadexp.reports.cifar_report import data_set_names, find_cifar_runs, make_cifar_report
        from nadexp.reports.dashboard import write_dashboard
        from nadexp.reports.sweep_report import is_sweep_dir, make_report
        from nadexp.results.atomic import write_csv_atomic

        rows = collect_results(sweep_dir)
        columns = [c for c in COLUMNS if c in ("job", "status") or any(row.get(c) is not None for row in rows)]
        write_csv_atomic(sweep_dir / "summary.csv", columns, rows)
        table = Table(title=f"{len(rows)} runs in {sweep_dir}")
        for column in columns:
            table.add_column(column, justify="right" if column.endswith(("acc", "_s", "seed", "index")) else "left")
        for row in rows:
            table.add_row(*(_format(column, row.get(column)) for column in columns))
        Console(width=150).print(table)
        cifar_runs = find_cifar_runs(sweep_dir)
        if cifar_runs:  # runs on image files: the flip table and/or the poisoning curve
            files = make_cifar_report(cifar_runs, sweep_dir / "report")
            what = f"{len(cifar_runs)} {data_set_names(cifar_runs)} run(s)"
            Console(width=150, soft_wrap=True).print(f"report of {what}: {', '.join(map(str, files))}")
        sweeps = [p for p in sweep_dir.iterdir() if is_sweep_dir(p)]
        if sweeps:  # direction sweeps: their figures side by side, and the dashboard page of them all
            files = make_report(sorted(sweeps), sweep_dir / "report")
            figure = next((f for f in files if f.name == "heatmap_panel.png"), files[0])
            page = write_dashboard([sweep_dir], sweep_dir / "report" / "dashboard.html")
            report = f"report of {len(sweeps)} sweep(s) in {sweep_dir / 'report'}; figure: {figure}"
            Console(width=150, soft_wrap=True).print(f"{report}\ndashboard: {page}")


def _format(column: str, value) -> str:
    if isinstance(value, float):
        return f"{value:.1f}" if column.endswith("_s") else f"{value:.4f}"
    return "" if value is None else str(value)
