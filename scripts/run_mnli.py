"""Fine-tune on GLUE MNLI.

accelerate launch --config_file configs/accelerate_cpu.yaml scripts/run_mnli.py configs/mnli/minilm_cpu.yaml
accelerate launch scripts/run_mnli.py configs/mnli/distilbert.yaml --learning_rate 3e-5
accelerate launch scripts/run_mnli.py      # no recipe: the default one, configs/mnli/distilbert.yaml
"""

import sys
from pathlib import Path

from pipelines import cli
from pipelines.data_files import DataError
from pipelines.tasks.mnli import main

REPO = Path(__file__).resolve().parent.parent
DEFAULT_RECIPE = REPO / "configs" / "mnli" / "distilbert.yaml"
OFFLINE_COMMAND = (
    "accelerate launch --config_file configs/accelerate_cpu.yaml scripts/run_mnli.py configs/mnli/minilm_cpu.yaml"
)


def run(argv: list[str]):
    """A recipe anywhere on the command line, or none: then DistilBERT on all of MNLI from the Hub (the default
    recipe), at the precision this machine supports; offline, the error names the CPU recipe that runs here."""
    if any(not arg.startswith("-") and arg.lower().endswith((".yaml", ".yml")) for arg in argv):
        return main(argv)
    print(
        f"No recipe given: running the default recipe {DEFAULT_RECIPE.relative_to(REPO)} "
        "(DistilBERT on all of MNLI from the Hub).",
        flush=True,
    )
    try:
        return main([str(DEFAULT_RECIPE), *argv])
    except (OSError, ValueError) as error:  # the data set's or the model's Hub load (DataError / ModelLoadError)
        if "Hugging Face Hub" not in str(error) and "huggingface.co" not in str(error):
            raise
        raise DataError(
            f"{str(error).splitlines()[0]}\nThe Hub cannot be reached; the offline CPU recipe is: {OFFLINE_COMMAND}"
        ) from error


if __name__ == "__main__":
    cli.run(run, sys.argv[1:])
