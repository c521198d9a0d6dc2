"""Build the English MLM corpus from train-side text only (SQuAD train contexts, MNLI train sentences, the Wikipedia
and WikiText samples), with every line that shares text with SQuAD or MNLI dev removed. See pipelines/corpus.py.

    python scripts/build_corpus.py --data_dir ../shared/data --output_dir outputs/corpus/en_trainside
"""

import json
import sys

from pipelines.arguments import parse_recipe
from pipelines.corpus import CorpusArguments, main

if __name__ == "__main__":
    args, _resolved = parse_recipe([CorpusArguments], sys.argv[1:])
    print(json.dumps(main(args), indent=2))
