"""Bad input stops a run before it writes anything, with an error that names the file, line or example, and field.

Each case runs the real entry point (`mnli.main` / `qa.main`) in-process and checks the message and that no
output folder was left behind. Parser-level cases (each format, each label form) are in test_mnli.py and test_qa.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.arguments import RecipeError
from pipelines.data_files import DataError
from pipelines.tasks import mnli, qa

ROW = {"premise": "A man plays a guitar.", "hypothesis": "A man makes music.", "label": 0}


def mnli_dir(folder: Path, train_rows=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "validation_matched", "validation_mismatched"):
        rows = train_rows if (split == "train" and train_rows is not None) else [ROW, dict(ROW, label=2)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def run_mnli(tmp_path, *args) -> tuple[Exception, Path]:
    output_dir = tmp_path / "out"
    with pytest.raises((DataError, RecipeError, ValueError, OSError)) as error:
        mnli.main(["--output_dir", str(output_dir), "--max_steps", "1", "--report_to", "none", *args])
    assert not output_dir.exists(), "a failed run left an output folder behind"
    return error.value, output_dir


def test_empty_data_set_after_filtering(tmp_path, tiny_bert_dir):
    data = mnli_dir(tmp_path / "data", train_rows=[dict(ROW, label="-"), dict(ROW, label="-")])
    error, _ = run_mnli(tmp_path, "--model_name_or_path", str(tiny_bert_dir), "--data_dir", str(data))
    assert "train.jsonl" in str(error) and "no usable pairs" in str(error)


def test_bad_label_in_a_run(tmp_path, tiny_bert_dir):
    data = mnli_dir(tmp_path / "data", train_rows=[ROW, dict(ROW, label=3)])
    error, _ = run_mnli(tmp_path, "--model_name_or_path", str(tiny_bert_dir), "--data_dir", str(data))
    assert "train.jsonl, line 2" in str(error) and "'label'" in str(error)


def test_unknown_preset(tmp_path):
    data = mnli_dir(tmp_path / "data")
    error, _ = run_mnli(tmp_path, "--scratch_preset", "huge", "--tokenizer_name", "minilm", "--data_dir", str(data))
    assert "huge" in str(error) and "small-3l-4h" in str(error)


def test_tokenizer_larger_than_the_embeddings(tmp_path, minilm_path):
    from transformers import BertConfig, BertForSequenceClassification

    small_vocab = tmp_path / "small-vocab-model"
    config = BertConfig(
        vocab_size=1000, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, num_labels=3
    )
    BertForSequenceClassification(config).save_pretrained(small_vocab)
    data = mnli_dir(tmp_path / "data")
    error, _ = run_mnli(
        tmp_path, "--model_name_or_path", str(small_vocab), "--tokenizer_name", minilm_path, "--data_dir", str(data)
    )
    assert "30522 tokens" in str(error) and "1000 rows" in str(error)


def test_max_seq_length_beyond_positions(tmp_path, tiny_bert_dir):
    data = mnli_dir(tmp_path / "data")
    error, _ = run_mnli(
        tmp_path, "--model_name_or_path", str(tiny_bert_dir), "--data_dir", str(data), "--max_seq_length", "256"
    )
    assert "max_seq_length 256" in str(error) and "128 positions" in str(error)


def test_unknown_recipe_key_in_a_run(tmp_path, tiny_bert_dir):
    error, _ = run_mnli(tmp_path, "--model_name_or_path", str(tiny_bert_dir), "--data_dirr", "x")
    assert "unknown key 'data_dirr'" in str(error) and "data_dir" in str(error)


def test_qa_doc_stride_not_below_window(tmp_path, tiny_bert_dir):
    fixture = Path(__file__).parent / "fixtures" / "qa" / "tiny_squad.json"
    output_dir = tmp_path / "out"
    with pytest.raises(RecipeError, match="doc_stride"):
        qa.main(
            [
                "--model_name_or_path",
                str(tiny_bert_dir),
                "--validation_file",
                str(fixture),
                "--max_seq_length",
                "64",
                "--doc_stride",
                "64",
                "--output_dir",
                str(output_dir),
                "--report_to",
                "none",
            ]
        )
    assert not output_dir.exists()


def test_qa_answer_not_matching_its_start(tmp_path, tiny_bert_dir):
    bad = {
        "version": "1.1",
        "data": [
            {
                "title": "T",
                "paragraphs": [
                    {
                        "context": "The cat sat on the mat.",
                        "qas": [
                            {
                                "id": "q1",
                                "question": "Where did the cat sit?",
                                "answers": [{"text": "the mat", "answer_start": 3}],
                            }
                        ],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    output_dir = tmp_path / "out"
    with pytest.raises(DataError) as error:
        qa.main(
            [
                "--model_name_or_path",
                str(tiny_bert_dir),
                "--validation_file",
                str(path),
                "--max_seq_length",
                "64",
                "--doc_stride",
                "16",
                "--max_query_length",
                "16",
                "--output_dir",
                str(output_dir),
                "--report_to",
                "none",
            ]
        )
    assert "bad.json" in str(error.value) and "q1" in str(error.value) and "answer_start" in str(error.value)
    assert not output_dir.exists()
