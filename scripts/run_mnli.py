"""Fine-tune on GLUE MNLI.

    accelerate launch --config_file configs/accelerate_cpu.yaml scripts/run_mnli.py configs/mnli/minilm_cpu.yaml
    accelerate launch scripts/run_mnli.py configs/mnli/distilbert.yaml --learning_rate 3e-5
    accelerate launch scripts/run_mnli.py      # no recipe: the default one, configs/mnli/distilbert.yaml
"""

import sys
from pathlib import Path

from pipelines.tasks.mnli import main

REPO = Path(__file__).resolve().parent.parent
DEFAULT_RECIPE = REPO / "configs" / "mnli" / "distilbert.yaml"
OFFLINE_COMMAND = "accelerate launch --config_file configs/accelerate_cpu.yaml scripts/run_mnli.py configs/mnli/minilm_cpu.yaml"


def main_with_default_recipe(argv: list[str]) -> None:
    """No recipe on the command line: DistilBERT on all of MNLI from the Hub, at the precision this machine supports."""
    print(f"No recipe given: running the default recipe {DEFAULT_RECIPE.relative_to(REPO)} "
          "(DistilBERT on all of MNLI from the Hub).", flush=True)
    try:
        main([str(DEFAULT_RECIPE), *argv])
    except (OSError, ValueError) as error:  # the data set's or the model's Hub load (DataError / hub.hub_error)
        if "Hugging Face Hub" not in str(error):
            raise
        sys.exit(f"{str(error).splitlines()[0]}\nThe Hub cannot be reached; the offline CPU recipe is: {OFFLINE_COMMAND}")

if __name__ == "__main__":
    args = sys.argv[1:]
    if not args or args[0].startswith("-"):
        main_with_default_recipe(args)
    else:
        main()
