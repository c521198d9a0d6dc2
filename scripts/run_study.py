"""Run a study: its search (if any), then every arm × seed of a study file as one job, resumable, then the report.

    python scripts/run_study.py configs/studies/mnli_pretrained_vs_scratch_cpu.yaml
    python scripts/run_study.py configs/studies/qa_ablation_korquad_cpu.yaml --dry-run    # the plan and commands
    python scripts/run_study.py configs/studies/mnli_pretrained_vs_scratch.yaml --backend slurm   # a job array
    python scripts/run_study.py configs/studies/mnli_search_scratch_optuna_cpu.yaml --search-only  # a search worker
    python scripts/run_study.py configs/studies/mnli_pretrained_vs_scratch.yaml --report-only --wandb-report

Run it again after an interruption: finished jobs are skipped and an interrupted job resumes from its last
checkpoint. See pipelines/study.py for the study file format, study_backends.py and search.py for the rest.
"""

from pipelines import cli
from pipelines.study import main

if __name__ == "__main__":
    cli.run(main)
