"""Compare finished runs: a report folder with Markdown, HTML, summary.json and PNG plots.

    python scripts/compare.py outputs/studies/mnli-cpu/pretrained/seed42 outputs/studies/mnli-cpu/scratch/seed42 \
        --output-dir outputs/reports/mnli-cpu
    python scripts/compare.py pretrained=outputs/a/seed42 pretrained=outputs/a/seed43 scratch=outputs/b/seed42 scratch=outputs/b/seed43
    python scripts/compare.py outputs/a/seed42/wandb/offline-run-* --wandb-run me/pipelines/abc123 --wandb-report

See pipelines/reports.py for what the report contains.
"""

from pipelines import cli
from pipelines.reports import main

if __name__ == "__main__":
    cli.run(main)
