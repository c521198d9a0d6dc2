"""Metrics that ship with the project as `evaluate` modules, so they load without the Hub."""

from pathlib import Path

METRICS_DIR = Path(__file__).resolve().parent


def metric_path(name: str) -> str:
    path = METRICS_DIR / name
    if not (path / f"{name}.py").is_file():
        known = sorted(p.name for p in METRICS_DIR.iterdir() if (p / f"{p.name}.py").is_file())
        raise ValueError(f"Unknown metric '{name}'. Project metrics: {', '.join(known)}")
    return str(path)


def load_metric(name: str, config_name: str | None = None):
    import evaluate

    return evaluate.load(metric_path(name), config_name)
