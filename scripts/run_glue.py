"""Fine-tune on any GLUE task, chosen by task_name (cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli).

accelerate launch --config_file configs/accelerate_cpu.yaml scripts/run_glue.py configs/glue/minilm.yaml
accelerate launch scripts/run_glue.py configs/glue/minilm.yaml --task_name cola --output_dir outputs/glue/cola
"""

from pipelines import cli
from pipelines.tasks.glue import main

if __name__ == "__main__":
    cli.run(main)
