"""Print, for each checkpoint, whether its encoder uses context or has collapsed (pipelines/encoder_probe.py).

  python scripts/probe_encoder.py --checkpoints outputs/pretraining/<run>/checkpoint-75 outputs/pretraining/<run> \
    --text outputs/corpus/en_trainside/heldout.txt
"""

from __future__ import annotations

import sys

from transformers import HfArgumentParser

from pipelines import cli
from pipelines.encoder_probe import ProbeArguments, markdown_table, probe_checkpoints


def main(argv: list[str]) -> int:
    (args,) = HfArgumentParser(ProbeArguments).parse_args_into_dataclasses(argv)
    print(markdown_table(probe_checkpoints(args)))
    return 0


if __name__ == "__main__":
    cli.run(main, sys.argv[1:])
