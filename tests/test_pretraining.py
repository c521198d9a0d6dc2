"""Pretraining: tokenizer training, packing, masking statistics, and a tiny real MLM run whose checkpoint loads for
fine-tuning. Everything here is CPU-sized (the whole file takes seconds)."""

from __future__ import annotations

import glob
import json
import math
import runpy
import unicodedata
from pathlib import Path

import pytest
import torch
from conftest import REPO, shared_data_dir
from safetensors.torch import load_file
from transformers import (
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    TrainingArguments,
)

from pipelines.arguments import ModelArguments, TrackingArguments, parse_recipe
from pipelines.tasks.mlm import (
    PretrainingDataArguments,
    load_raw_datasets,
    main,
    make_collator,
    pack_into_blocks,
    perplexity,
    preprocess,
)
from pipelines.tokenizer_training import (
    SPECIAL_TOKENS,
    TRAINING_RECORD_FILE,
    TokenizerTrainingArguments,
    make_normalizer,
    train_tokenizer,
    train_unigram_tokenizer,
    train_wordpiece_tokenizer,
)

ENGLISH = [
    "The Transformer encoder reads the whole sentence at once.",
    "Masked language models predict hidden words from their context.",
    "Wikipedia articles are split into paragraphs, one per line.",
    "A tokenizer cuts rare words into frequent pieces.",
    "Café owners in Zürich serve coffee with crème.",
    "Students read books in the library every morning.",
]
KOREAN = [
    "한국어 위키백과는 누구나 편집할 수 있는 자유 백과사전이다.",
    "서울은 대한민국의 수도이며 가장 큰 도시이다.",
    "학생들은 매일 아침 도서관에서 책을 읽는다.",
    "언어 모델은 문맥에서 가려진 단어를 예측한다.",
    "토크나이저는 드문 단어를 자주 나오는 조각으로 나눈다.",
    "지미 카터는 미국의 제39대 대통령이다.",
]


def write_lines(path: Path, lines: list[str], repeat: int = 20) -> Path:
    # Repeated with a counter, so that every line differs and WordPiece finds frequent pieces to merge.
    path.write_text("".join(f"{line} {i}\n" for i in range(repeat) for line in lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def text_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("text")
    return {"en": write_lines(folder / "en.txt", ENGLISH), "ko": write_lines(folder / "ko.txt", KOREAN)}


@pytest.fixture(scope="module")
def ko_tokenizer_dir(tmp_path_factory, text_files) -> Path:
    folder = tmp_path_factory.mktemp("ko-tokenizer")
    args = TokenizerTrainingArguments(
        files=[str(text_files["ko"]), str(text_files["en"])], output_dir=str(folder), language="ko", vocab_size=400
    )
    train_tokenizer(args)
    return folder


@pytest.fixture(scope="module")
def ko_tokenizer(ko_tokenizer_dir):
    return AutoTokenizer.from_pretrained(ko_tokenizer_dir)


def has_jamo(text: str) -> bool:
    """True if the text holds Hangul jamo (letters of a decomposed syllable) rather than composed syllables."""
    return any("\u1100" <= ch <= "\u11ff" for ch in text)


# ---------------------------------------------------------------------------------------------------------------------
# Tokenizer


def test_korean_tokenizer_round_trip_keeps_syllables(ko_tokenizer_dir, ko_tokenizer):
    tokenizer = ko_tokenizer
    assert tokenizer.is_fast
    assert [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert (tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.mask_token_id) == (
        0,
        2,
        3,
        4,
    )
    for sentence in KOREAN:
        encoding = tokenizer(sentence, return_offsets_mapping=True)
        ids = encoding["input_ids"]
        assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids, skip_special_tokens=True) == sentence
        tokens = tokenizer.convert_ids_to_tokens(ids)
        assert not any(has_jamo(token) for token in tokens), tokens  # no NFD splitting of syllables
        # Offsets point back at the original characters (what QA needs to map answers to text).
        for token, (start, end) in zip(tokens[1:-1], encoding["offset_mapping"][1:-1]):
            assert sentence[start:end] == token.removeprefix("##")
    record = json.loads((ko_tokenizer_dir / TRAINING_RECORD_FILE).read_text(encoding="utf-8"))
    assert record["normalizer"] == {"lowercase": False, "strip_accents": False, "nfc": True}


def test_korean_text_in_decomposed_form_is_composed_again(ko_tokenizer):
    sentence = KOREAN[0]
    decomposed = unicodedata.normalize("NFD", sentence)
    assert has_jamo(decomposed)
    assert ko_tokenizer(decomposed)["input_ids"] == ko_tokenizer(sentence)["input_ids"]


def test_accent_stripping_would_destroy_hangul():
    # The reason the ko preset turns it off: stripping accents goes through NFD, which splits every syllable into jamo.
    assert has_jamo(make_normalizer(lowercase=False, strip_accents=True, nfc=False).normalize_str("한국어"))
    assert make_normalizer(lowercase=False, strip_accents=False, nfc=True).normalize_str("한국어") == "한국어"


def test_sentence_pair_template_and_token_types(ko_tokenizer):
    encoding = ko_tokenizer("서울은 수도이다.", "학생들은 책을 읽는다.")
    ids, types = encoding["input_ids"], encoding["token_type_ids"]
    sep_positions = [i for i, token in enumerate(ids) if token == ko_tokenizer.sep_token_id]
    assert ids[0] == ko_tokenizer.cls_token_id and len(sep_positions) == 2 and sep_positions[1] == len(ids) - 1
    first_sep = sep_positions[0]
    assert types == [0] * (first_sep + 1) + [1] * (len(ids) - first_sep - 1)


def test_english_tokenizer_is_uncased_and_strips_accents(tmp_path, text_files):
    tokenizer = train_wordpiece_tokenizer([text_files["en"]], vocab_size=300, lowercase=True, strip_accents=True)
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    ids = loaded("Masked language models predict hidden words.")["input_ids"]
    assert loaded.decode(ids, skip_special_tokens=True) == "masked language models predict hidden words."
    assert loaded.tokenize("CAFÉ") == loaded.tokenize("cafe")
    assert loaded("a", "b", return_offsets_mapping=True)["offset_mapping"] == [(0, 0), (0, 1), (0, 0), (0, 1), (0, 0)]


def test_unigram_tokenizer_round_trip(text_files):
    tokenizer = train_unigram_tokenizer(
        [text_files["ko"]], vocab_size=200, lowercase=False, strip_accents=False, nfc=True
    )
    for sentence in KOREAN[:3]:
        ids = tokenizer(sentence)["input_ids"]
        assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
        assert tokenizer.decode(ids, skip_special_tokens=True) == sentence


def test_train_tokenizer_cli_and_missing_file(tmp_path, text_files):
    script = runpy.run_path(str(REPO / "scripts" / "train_tokenizer.py"))  # defines main(argv), runs nothing
    output_dir = tmp_path / "tokenizer"
    script["main"](
        ["--files", str(text_files["ko"]), "--language", "ko", "--vocab_size", "300", "--output_dir", str(output_dir)]
    )
    assert AutoTokenizer.from_pretrained(output_dir).mask_token == "[MASK]"
    with pytest.raises(FileNotFoundError, match="no-such-file.txt"):
        script["main"](
            ["--files", str(tmp_path / "no-such-file.txt"), "--language", "ko", "--output_dir", str(output_dir)]
        )


# ---------------------------------------------------------------------------------------------------------------------
# Text, packing and masking


def test_held_out_lines_are_the_tail_and_missing_files_are_named(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("".join(f"line {i}\n" for i in range(100)), encoding="utf-8")
    raw = load_raw_datasets(PretrainingDataArguments(train_files=[str(path)], validation_split_percentage=10))
    assert raw["train"]["text"] == [f"line {i}" for i in range(90)]
    assert raw["validation"]["text"] == [f"line {i}" for i in range(90, 100)]

    held_out = tmp_path / "held_out.txt"
    held_out.write_text("other\n", encoding="utf-8")
    raw = load_raw_datasets(PretrainingDataArguments(train_files=[str(path)], validation_file=str(held_out)))
    assert len(raw["train"]) == 100 and raw["validation"]["text"] == ["other"]

    with pytest.raises(FileNotFoundError, match="missing.txt"):
        load_raw_datasets(PretrainingDataArguments(train_files=[str(path), str(tmp_path / "missing.txt")]))


def test_pack_into_blocks_loses_only_the_remainder():
    cls_id, sep_id, block_size = 2, 3, 8
    lines = [[10, 11, 12, sep_id], [13, sep_id], [14, 15, 16, 17, 18, 19, 20, sep_id], [21, 22, sep_id]]
    offsets = [[(i, i + 1) for i in range(len(line))] for line in lines]
    blocks = pack_into_blocks({"input_ids": lines, "offset_mapping": offsets}, block_size, cls_id, sep_id)

    stream = [token for line in lines for token in line]  # 17 tokens -> 2 blocks of 6, 5 left over
    assert len(blocks["input_ids"]) == len(stream) // (block_size - 2) == 2
    for block, special, block_offsets in zip(
        blocks["input_ids"], blocks["special_tokens_mask"], blocks["offset_mapping"]
    ):
        assert len(block) == len(special) == len(block_offsets) == block_size
        assert block[0] == cls_id and block[-1] == sep_id
        assert special == [1 if token in (cls_id, sep_id) else 0 for token in block]
        assert block_offsets[0] == block_offsets[-1] == (0, 0)
    packed_content = [token for block in blocks["input_ids"] for token in block[1:-1]]
    assert packed_content == stream[: len(packed_content)]
    assert len(stream) - len(packed_content) < block_size - 2


def preprocess_text(tmp_path, tokenizer, lines, **data_options):
    path = tmp_path / "corpus.txt"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    data_args = PretrainingDataArguments(train_files=[str(path)], validation_file=str(path), **data_options)
    training_args = TrainingArguments(output_dir=str(tmp_path / "run"), report_to="none")
    return preprocess(load_raw_datasets(data_args), tokenizer, data_args, training_args)["train"], data_args


def test_preprocess_packs_every_token_into_full_blocks(tmp_path, ko_tokenizer):
    lines = KOREAN * 10 + ["", "   "] + ENGLISH * 10  # blank lines are dropped
    blocks, data_args = preprocess_text(tmp_path, ko_tokenizer, lines, max_seq_length=32)
    assert set(blocks.column_names) == {"input_ids", "special_tokens_mask"}
    line_tokens = [len(ko_tokenizer(line, add_special_tokens=False)["input_ids"]) + 1 for line in lines if line.strip()]
    assert len(blocks) == sum(line_tokens) // 30  # one map batch: only its remainder is lost
    assert all(
        len(block) == 32 and block[0] == ko_tokenizer.cls_token_id and block[-1] == ko_tokenizer.sep_token_id
        for block in blocks["input_ids"]
    )


def test_line_by_line_keeps_one_example_per_line(tmp_path, ko_tokenizer):
    examples, data_args = preprocess_text(tmp_path, ko_tokenizer, KOREAN + [""], max_seq_length=12, line_by_line=True)
    assert len(examples) == len(KOREAN)
    assert all(
        len(ids) <= 12 and ids[0] == ko_tokenizer.cls_token_id and ids[-1] == ko_tokenizer.sep_token_id
        for ids in examples["input_ids"]
    )
    batch = make_collator(ko_tokenizer, data_args)([examples[i] for i in range(len(examples))])
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape


def test_masking_statistics(ko_tokenizer):
    """15% of the non-special tokens are chosen; of those 80% [MASK], 10% random, 10% unchanged; specials never."""
    torch.manual_seed(0)
    vocab, block_size, num_blocks = len(ko_tokenizer), 128, 200
    cls_id, sep_id, mask_id = ko_tokenizer.cls_token_id, ko_tokenizer.sep_token_id, ko_tokenizer.mask_token_id
    examples = []
    for _ in range(num_blocks):
        ids = torch.randint(len(SPECIAL_TOKENS), vocab, (block_size,)).tolist()
        ids[0], ids[40], ids[-1] = cls_id, sep_id, sep_id  # a line boundary inside the block, as packing makes
        examples.append({"input_ids": ids, "special_tokens_mask": [int(t in (cls_id, sep_id)) for t in ids]})
    original = torch.tensor([e["input_ids"] for e in examples])
    batch = make_collator(ko_tokenizer, PretrainingDataArguments(train_files=["unused"]))(examples)

    special = (original == cls_id) | (original == sep_id)
    chosen = batch["labels"] != -100
    assert not chosen[special].any() and torch.equal(batch["input_ids"][special], original[special])
    assert torch.equal(batch["labels"][chosen], original[chosen])
    assert torch.equal(batch["input_ids"][~chosen], original[~chosen])

    share_chosen = chosen.sum().item() / (~special).sum().item()
    as_mask = (batch["input_ids"] == mask_id) & chosen
    unchanged = (batch["input_ids"] == original) & chosen
    as_random = chosen & ~as_mask & ~unchanged
    num_chosen = chosen.sum().item()
    assert abs(share_chosen - 0.15) < 0.01  # about 3,800 chosen of 25,000: standard error 0.002
    assert abs(as_mask.sum().item() / num_chosen - 0.8) < 0.03
    assert abs(as_random.sum().item() / num_chosen - 0.1) < 0.03
    assert abs(unchanged.sum().item() / num_chosen - 0.1) < 0.03


def test_whole_word_masking_masks_every_piece_of_a_word(tmp_path, ko_tokenizer):
    blocks, data_args = preprocess_text(
        tmp_path, ko_tokenizer, KOREAN * 20, max_seq_length=32, whole_word_mask=True, mlm_probability=0.3
    )
    assert set(blocks.column_names) == {"input_ids", "special_tokens_mask", "offset_mapping"}
    torch.manual_seed(0)
    examples = [blocks[i] for i in range(len(blocks))]
    batch = make_collator(ko_tokenizer, data_args)(examples)
    assert "offset_mapping" not in batch  # used for word boundaries, never passed to the model
    chosen = batch["labels"] != -100
    assert chosen.any()
    assert (batch["input_ids"][chosen] == ko_tokenizer.mask_token_id).all()  # whole words: [MASK] only
    whole_words_seen = 0
    for row, example in enumerate(examples):
        tokens = ko_tokenizer.convert_ids_to_tokens(example["input_ids"])
        word_start = None  # position of the first piece of the current word
        for position, token in enumerate(tokens):
            if token in ko_tokenizer.all_special_tokens:
                word_start = None
            elif token.startswith("##") and word_start is not None:
                assert chosen[row, position] == chosen[row, word_start], (tokens, position)
                whole_words_seen += int(bool(chosen[row, position]))
            else:  # a word start; a "##" piece right after [CLS] or [SEP] starts its own word (cut by packing)
                word_start = position
    assert whole_words_seen > 0  # some multi-piece word was masked, so the check above had something to check


def test_perplexity():
    assert perplexity(0.0) == 1.0
    assert perplexity(math.log(32000)) == pytest.approx(32000)
    assert perplexity(1e6) == math.inf


# ---------------------------------------------------------------------------------------------------------------------
# Recipes and a real run


def pretraining_recipes(script: str) -> list[str]:
    """The recipes of configs/pretraining whose first line launches `script` (run_pretraining.py or
    train_word_vectors.py)."""
    recipes = sorted(glob.glob(str(REPO / "configs" / "pretraining" / "*.yaml")))
    return [r for r in recipes if f"scripts/{script} " in Path(r).read_text(encoding="utf-8").splitlines()[0]]


def test_every_pretraining_recipe_launches_a_pretraining_script():
    recipes = sorted(glob.glob(str(REPO / "configs" / "pretraining" / "*.yaml")))
    assert len(pretraining_recipes("run_pretraining.py")) + len(pretraining_recipes("train_word_vectors.py")) == len(
        recipes
    )


@pytest.mark.parametrize("recipe", pretraining_recipes("run_pretraining.py"), ids=lambda p: Path(p).name)
def test_recipes_parse_and_name_their_commands(recipe):
    from pipelines.models import PRESETS

    model_args, data_args, _, training_args, _ = parse_recipe(
        (ModelArguments, PretrainingDataArguments, TrackingArguments, TrainingArguments), [recipe]
    )
    header = Path(recipe).read_text(encoding="utf-8")
    # The header names the command that makes its inputs (a tokenizer or a corpus) and its own launch command.
    assert "scripts/train_tokenizer.py" in header or "scripts/build_corpus.py" in header
    assert f"scripts/run_pretraining.py configs/pretraining/{Path(recipe).name}" in header
    if model_args.model_name_or_path is None:
        assert model_args.scratch_preset in PRESETS
    else:
        # Continued pretraining: its start is the output of another recipe here, and the header says which.
        start = model_args.model_name_or_path
        assert Path(start).parts[:2] == ("outputs", "pretraining") and model_args.scratch_preset is None
        recipes = Path(recipe).parent.glob("*.yaml")
        makers = [r.name for r in recipes if f"output_dir: {start}\n" in r.read_text(encoding="utf-8")]
        assert makers and any(name in header for name in makers), (start, makers)
    made_by = ("../shared/data/corpus/", "outputs/corpus/")
    assert data_args.train_files and all(f.startswith(made_by) for f in data_args.train_files)
    assert Path(training_args.output_dir).parts[:2] == ("outputs", "pretraining")


@pytest.fixture(scope="module")
def corpus_lines() -> list[str]:
    path = shared_data_dir() / "corpus" / "kowiki_sample.txt"
    if not path.is_file():
        pytest.skip(f"{path} not found (set PIPELINES_DATA_DIR to the folder described in shared/data/README.md)")
    with path.open(encoding="utf-8") as f:
        return [next(f) for _ in range(300)]


@pytest.mark.slow
def test_tiny_pretraining_run_learns_and_its_encoder_loads_for_fine_tuning(tmp_path, corpus_lines):
    corpus = tmp_path / "kowiki_300.txt"
    corpus.write_text("".join(corpus_lines), encoding="utf-8")
    tokenizer_dir = tmp_path / "tokenizer"
    train_tokenizer(
        TokenizerTrainingArguments(files=[str(corpus)], output_dir=str(tokenizer_dir), language="ko", vocab_size=1000)
    )
    output_dir = tmp_path / "pretrained"

    results = main(
        [
            "--scratch_preset",
            "tiny",
            "--tokenizer_name",
            str(tokenizer_dir),
            "--train_files",
            str(corpus),
            "--validation_split_percentage",
            "10",
            "--max_seq_length",
            "64",
            "--max_eval_samples",
            "32",
            "--output_dir",
            str(output_dir),
            "--cache_dir",
            str(tmp_path / "cache"),
            "--report_to",
            "none",
            "--max_steps",
            "40",
            "--per_device_train_batch_size",
            "16",
            "--learning_rate",
            "1e-3",
            "--logging_steps",
            "5",
            "--seed",
            "0",
        ]
    )

    # Before training the model guesses among all tokens, perplexity about the vocabulary size; training lowers it.
    saved = json.loads((output_dir / "all_results.json").read_text(encoding="utf-8"))
    assert saved["eval_perplexity"] == pytest.approx(results["eval_perplexity"])
    assert results["eval_perplexity_before"] > 0.5 * len(AutoTokenizer.from_pretrained(tokenizer_dir))
    assert results["eval_loss"] < results["eval_loss_before"] - 0.2
    assert results["eval_perplexity"] == pytest.approx(math.exp(results["eval_loss"]))
    train_losses = [
        entry["loss"] for entry in json.loads((output_dir / "log_history.json").read_text()) if "loss" in entry
    ]
    assert len(train_losses) >= 4 and train_losses[-1] < train_losses[0]

    # The folder loads as a classifier and as a QA model: the encoder comes from pretraining, only the heads are new.
    pretrained = load_file(output_dir / "model.safetensors")
    encoder = {name: weight for name, weight in pretrained.items() if name.startswith("transformer.")}
    assert encoder
    for auto_class, options in (
        (AutoModelForSequenceClassification, {"num_labels": 3}),
        (AutoModelForQuestionAnswering, {}),
    ):
        model, loading = auto_class.from_pretrained(output_dir, output_loading_info=True, **options)
        assert not [key for key in loading["missing_keys"] if key.startswith("transformer.")], loading["missing_keys"]
        assert all(key.startswith("lm_head.") for key in loading["unexpected_keys"]), loading["unexpected_keys"]
        state = model.state_dict()
        for name, weight in encoder.items():
            assert torch.equal(state[name], weight), name
    assert AutoTokenizer.from_pretrained(output_dir).mask_token == "[MASK]"
