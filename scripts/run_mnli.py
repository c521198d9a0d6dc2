"""Fine-tune on GLUE MNLI.

    accelerate launch --config_file configs/accelerate_cpu.yaml scripts/run_mnli.py configs/mnli/minilm_cpu.yaml
    accelerate launch scripts/run_mnli.py configs/mnli/distilbert.yaml --learning_rate 3e-5
"""

from pipelines import cli
from pipelines.tasks.mnli import main

if __name__ == "__main__":
    cli.run(main)
