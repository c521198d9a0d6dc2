"""Build a pretraining corpus from train-side text only, with every line that shares text with dev removed: English
(SQuAD train contexts, MNLI train sentences, the Wikipedia and WikiText samples; checked against SQuAD and MNLI dev)
or Korean (the KorQuAD recipes' train-side articles and the Korean Wikipedia sample; checked against the held-out
KorQuAD articles). See pipelines/corpus.py.

    python scripts/build_corpus.py --data_dir ../shared/data --output_dir outputs/corpus/en_trainside
    python scripts/build_corpus.py --corpus ko_trainside --output_dir outputs/corpus/ko_trainside
"""

import json
import sys

from pipelines.arguments import parse_recipe
from pipelines.corpus import CorpusArguments, main

if __name__ == "__main__":
    args, _resolved = parse_recipe([CorpusArguments], sys.argv[1:])
    print(json.dumps(main(args), indent=2))
