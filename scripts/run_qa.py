"""Fine-tune on extractive QA (SQuAD v1.1, KorQuAD 1.0).

accelerate launch --config_file configs/accelerate_cpu.yaml scripts/run_qa.py configs/qa/squad_minilm_cpu.yaml
accelerate launch scripts/run_qa.py configs/qa/squad_distilbert.yaml
"""

from pipelines import cli
from pipelines.tasks.qa import main

if __name__ == "__main__":
    cli.run(main)
