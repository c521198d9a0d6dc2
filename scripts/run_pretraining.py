"""Masked-language-model or ELECTRA pretraining from a recipe (see pipelines/tasks/mlm.py for what happens).

    accelerate launch --config_file configs/accelerate_cpu.yaml scripts/run_pretraining.py \
        configs/pretraining/ko_small_3l_4h_cpu.yaml [--max_steps 5 --output_dir outputs/smoke]

Writes the model, tokenizer and all_results.json (eval_perplexity_before, eval_perplexity, ...; with objective: electra
eval_rtd_accuracy_before, eval_rtd_accuracy, ...) to output_dir.
"""

from pipelines import cli
from pipelines.tasks.mlm import main

if __name__ == "__main__":
    cli.run(main)
