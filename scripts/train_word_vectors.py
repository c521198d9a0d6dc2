"""Word vectors (skip-gram with negative sampling) on a text corpus, written into a scratch checkpoint's word table
(see pipelines/word_vectors.py for what happens).

    python scripts/train_word_vectors.py configs/pretraining/en_trainside_word_vectors_cpu.yaml [--epochs 1]

Writes the checkpoint, its tokenizer and word_vectors.json (pairs, FLOPs, train and held-out loss per epoch) to
output_dir; fine-tune it with `model_name_or_path: <output_dir>`.
"""

from pipelines import cli
from pipelines.word_vectors import main

if __name__ == "__main__":
    cli.run(main)
