"""Train a BERT-style tokenizer on plain-text files and save it for `AutoTokenizer.from_pretrained`.

    python scripts/train_tokenizer.py --files ../shared/data/corpus/kowiki_sample.txt --language ko \
        --vocab_size 32000 --output_dir outputs/tokenizers/ko-wordpiece-32k
    python scripts/train_tokenizer.py configs/tokenizers/ko_wordpiece_32k.yaml   # the same, from a recipe

See `pipelines/tokenizer_training.py` for the options (`--model_type unigram`, `--lowercase`, ...).
"""

from pipelines import cli, run_guard
from pipelines.arguments import parse_recipe
from pipelines.tokenizer_training import TokenizerTrainingArguments, train_tokenizer


def main(argv=None):
    args, _resolved = parse_recipe([TokenizerTrainingArguments], argv)
    run_guard.check_numbers(args)
    tokenizer = train_tokenizer(args)
    print(
        f"Saved a {args.model_type} tokenizer with {len(tokenizer)} tokens ({args.language} normalisation) "
        f"to {args.output_dir}"
    )


if __name__ == "__main__":
    cli.run(main)
