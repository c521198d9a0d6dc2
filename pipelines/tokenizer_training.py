"""Training a BERT-style tokenizer on raw text with the `tokenizers` library.

    python scripts/train_tokenizer.py --files ../shared/data/corpus/kowiki_sample.txt --language ko \
        --vocab_size 32000 --output_dir outputs/tokenizers/ko-wordpiece-32k

What comes out is a folder that `AutoTokenizer.from_pretrained(folder)` loads as a fast tokenizer: it has the BERT
special tokens ([PAD] [UNK] [CLS] [SEP] [MASK]), wraps inputs as `[CLS] A [SEP]` / `[CLS] A [SEP] B [SEP]` with
token type ids 0 / 1, and returns offset mappings (extractive QA needs them to map answers back to characters).

Normalisation depends on the language, which is why `--language` chooses it:
- en: lower-case and strip accents, as bert-base-uncased does.
- ko: neither. Accent stripping decomposes text to NFD and drops combining marks; NFD splits every Hangul syllable
  into its jamo (한 -> ᄒ ᅡ ᆫ), so the vocabulary would be learnt on jamo and decoding would not give back the
  syllables. Korean text is instead composed to NFC, so that syllables written as separate jamo become one syllable.

Two things to know:
- `vocab_size` counts the special tokens, and WordPiece never drops a character it has seen: on a small Korean
  text with thousands of distinct syllables the vocabulary can come out larger than asked (each character is
  kept both as a word start and as a ## continuation). `tokenizer_training.json` records the actual size.
- Training is not bit-for-bit reproducible: `tokenizers` numbers the ## pieces in hash-map order, so a second run
  on the same text gives different ids (and, at ties, a few different tokens; huggingface/tokenizers#1794). The
  saved folder is the artifact: a pretrained model is only valid with the tokenizer saved beside it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from pipelines.data_files import DataFileNotFound

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
# The order fixes the ids: [PAD]=0 (the model's padding_idx), [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4.
SPECIAL_TOKENS = [PAD, UNK, CLS, SEP, MASK]

# Normaliser settings per language (see the module docstring for why Korean keeps case and accents).
LANGUAGE_PRESETS = {
    "en": {"lowercase": True, "strip_accents": True, "nfc": False},
    "ko": {"lowercase": False, "strip_accents": False, "nfc": True},
}

# Where the saved tokenizer records how it was trained.
TRAINING_RECORD_FILE = "tokenizer_training.json"


@dataclass
class TokenizerTrainingArguments:
    """Arguments of `scripts/train_tokenizer.py` (also readable from a YAML recipe in configs/tokenizers/)."""

    files: list[str] = field(metadata={"help": "Plain-text training files, one paragraph per line."})
    output_dir: str = field(
        metadata={"help": "Folder to save the tokenizer in (AutoTokenizer.from_pretrained loads it)."}
    )
    language: str = field(
        metadata={
            "help": "Normalisation preset: en (lower-case, strip accents) or ko (keep both, NFC).",
            "choices": list(LANGUAGE_PRESETS),
        }
    )
    vocab_size: int = field(default=32000, metadata={"help": "Vocabulary size, the 5 special tokens included."})
    model_type: str = field(
        default="wordpiece",
        metadata={
            "help": "wordpiece (BERT, ## continuation pieces) or unigram (SentencePiece-style, ▁ word starts).",
            "choices": ["wordpiece", "unigram"],
        },
    )
    min_frequency: int = field(default=2, metadata={"help": "WordPiece: a merge must occur at least this often."})
    lowercase: bool | None = field(default=None, metadata={"help": "Override the language preset's lower-casing."})
    strip_accents: bool | None = field(
        default=None, metadata={"help": "Override the language preset's accent stripping."}
    )
    model_max_length: int = field(
        default=512, metadata={"help": "Longest input the saved tokenizer allows (truncation limit)."}
    )

    def normalizer_settings(self) -> dict:
        settings = dict(LANGUAGE_PRESETS[self.language])
        if self.lowercase is not None:
            settings["lowercase"] = self.lowercase
        if self.strip_accents is not None:
            settings["strip_accents"] = self.strip_accents
        return settings


def check_files(files) -> list[str]:
    """The training files as strings; an error names every file that is missing."""
    files = [str(f) for f in files]
    if not files:
        raise DataFileNotFound("No training files given for the tokenizer.")
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise DataFileNotFound(f"Tokenizer training file(s) not found: {', '.join(missing)}")
    return files


def make_normalizer(lowercase: bool, strip_accents: bool, nfc: bool) -> normalizers.Normalizer:
    # BertNormalizer: drop control characters, map whitespace to spaces, put spaces around CJK ideographs (Hangul is
    # not in those ranges), then optionally strip accents and lower-case. strip_accents is passed explicitly because
    # its default (None) follows `lowercase`.
    bert = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=strip_accents, lowercase=lowercase
    )
    return normalizers.Sequence([normalizers.NFC(), bert]) if nfc else bert


def add_bert_template(tokenizer: Tokenizer) -> None:
    """`[CLS] A [SEP]` for one text, `[CLS] A [SEP] B [SEP]` for a pair, with token type 1 on the B part."""
    cls_id, sep_id = tokenizer.token_to_id(CLS), tokenizer.token_to_id(SEP)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{CLS}:0 $A:0 {SEP}:0",
        pair=f"{CLS}:0 $A:0 {SEP}:0 $B:1 {SEP}:1",
        special_tokens=[(CLS, cls_id), (SEP, sep_id)],
    )


def wrap_for_transformers(tokenizer: Tokenizer, model_max_length: int) -> PreTrainedTokenizerFast:
    """The `tokenizers` object as a transformers fast tokenizer, with its special tokens named."""
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD,
        unk_token=UNK,
        cls_token=CLS,
        sep_token=SEP,
        mask_token=MASK,
        model_max_length=model_max_length,
        padding_side="right",
        # Without this the generic fast tokenizer returns no token_type_ids, and sentence pairs (MNLI, QA) need them.
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


def train_wordpiece_tokenizer(
    files,
    vocab_size: int = 32000,
    lowercase: bool = True,
    strip_accents: bool = True,
    nfc: bool = False,
    min_frequency: int = 2,
    model_max_length: int = 512,
) -> PreTrainedTokenizerFast:
    """A BERT WordPiece tokenizer trained on `files` (plain text); `vocab_size` counts the special tokens."""
    tokenizer = Tokenizer(models.WordPiece(unk_token=UNK, continuing_subword_prefix="##"))
    tokenizer.normalizer = make_normalizer(lowercase, strip_accents, nfc)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()  # split on whitespace and punctuation
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        continuing_subword_prefix="##",
    )
    tokenizer.train(check_files(files), trainer)
    add_bert_template(tokenizer)
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return wrap_for_transformers(tokenizer, model_max_length)


def train_unigram_tokenizer(
    files,
    vocab_size: int = 32000,
    lowercase: bool = True,
    strip_accents: bool = True,
    nfc: bool = False,
    model_max_length: int = 512,
) -> PreTrainedTokenizerFast:
    """A SentencePiece-style Unigram tokenizer (word starts marked with ▁) with the same BERT special tokens and
    template."""
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = make_normalizer(lowercase, strip_accents, nfc)
    # Split on spaces only and mark each word start with ▁, as SentencePiece does; punctuation is left to the model,
    # so decoding gives back the original spacing ("end." rather than "end .").
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, unk_token=UNK)
    tokenizer.train(check_files(files), trainer)
    add_bert_template(tokenizer)
    tokenizer.decoder = decoders.Metaspace()
    return wrap_for_transformers(tokenizer, model_max_length)


def train_tokenizer(args: TokenizerTrainingArguments) -> PreTrainedTokenizerFast:
    """Train the tokenizer that `args` describes, save it to `args.output_dir`, and return it."""
    settings = args.normalizer_settings()
    if args.model_type == "wordpiece":
        tokenizer = train_wordpiece_tokenizer(
            args.files,
            args.vocab_size,
            min_frequency=args.min_frequency,
            model_max_length=args.model_max_length,
            **settings,
        )
    else:
        tokenizer = train_unigram_tokenizer(
            args.files, args.vocab_size, model_max_length=args.model_max_length, **settings
        )
    output_dir = Path(args.output_dir)
    tokenizer.save_pretrained(output_dir)
    record = {**asdict(args), "normalizer": settings, "actual_vocab_size": len(tokenizer)}
    (output_dir / TRAINING_RECORD_FILE).write_text(
        json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return tokenizer
