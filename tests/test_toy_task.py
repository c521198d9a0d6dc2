"""A task kind defined entirely here: toy token classification (each word NOUN, VERB or OTHER), registered with
`register_task` and run end to end with no change to pipelines/: training through the run sequence
(pipelines/tasks/kind_run.py), the model card, scripts/predict.py and a comparison report of two runs.

It is the proof that a task owns its behaviour: its data, model head, collator and metrics, its prediction lines,
per-example score and its scale, what its card says and what predict.py writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from pipelines.task_definitions.base import Metric, Task, TaskKind, register_task

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

TAGS = ("NOUN", "VERB", "OTHER")
NOUNS = ("dog", "cat", "bird", "child", "farmer", "teacher", "horse", "girl")
VERBS = ("runs", "sleeps", "sings", "jumps", "eats", "reads", "swims", "waits")


def sentence(i: int) -> dict:
    """'the dog runs' / 'a cat sleeps today': a determiner (OTHER), a noun, a verb, sometimes an adverb (OTHER)."""
    words = ["the" if i % 2 else "a", NOUNS[i % len(NOUNS)], VERBS[(3 * i) % len(VERBS)]]
    tags = ["OTHER", "NOUN", "VERB"]
    if i % 3 == 0:
        words, tags = words + ["today"], tags + ["OTHER"]
    return {"words": words, "tags": tags}


# --- The kind: token classification, the transformers way -----------------------------------------------------


class TokenClassification(TaskKind):
    name = "token-classification"
    auto_class = "AutoModelForTokenClassification"
    hub_task_type = "token-classification"
    peft_task_type = "TOKEN_CLS"
    pipeline_task = "token-classification"

    # Training (pipelines/tasks/kind_run.py)

    def preprocess(self, task, dataset, tokenizer, max_seq_length):
        def tokenize(batch):
            encoded = tokenizer(batch["words"], is_split_into_words=True, truncation=True, max_length=max_seq_length)
            labels = []
            for i, tag_ids in enumerate(batch["tag_ids"]):
                word_ids, previous, row = encoded.word_ids(i), None, []
                for word in word_ids:  # the first sub-token of each word carries its tag; the rest are ignored
                    row.append(-100 if word is None or word == previous else tag_ids[word])
                    previous = word
                labels.append(row)
            encoded["labels"] = labels
            return encoded

        return dataset.map(tokenize, batched=True, remove_columns=dataset.column_names)

    def data_collator(self, tokenizer):
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer)

    def compute_metrics(self, task):
        def token_accuracy(prediction):
            predicted, gold = prediction.predictions.argmax(-1), prediction.label_ids
            scored = gold != -100
            return {"accuracy": float((predicted[scored] == gold[scored]).mean())}

        return token_accuracy

    def prediction_rows(self, task, output, dataset, features):
        predicted_ids, gold_ids = output.predictions.argmax(-1), output.label_ids
        rows = []
        for example, predicted, gold in zip(dataset, predicted_ids, gold_ids):
            scored = gold != -100
            gold_tags = [task.label_names[t] for t in gold[scored]]
            predicted_tags = [task.label_names[t] for t in predicted[scored]]
            correct = [g == p for g, p in zip(gold_tags, predicted_tags)]
            rows.append(
                {
                    "idx": example["idx"],
                    "words": example["words"],
                    "gold": gold_tags,
                    "predicted": predicted_tags,
                    "token_accuracy": float(np.mean(correct)),
                }
            )
        return rows

    # The per-example score reports compare: the fraction of the sentence's words tagged right (0-1)

    def example_score(self, row):
        if "token_accuracy" not in row:
            return None
        return row["idx"], {"token_accuracy": row["token_accuracy"]}, row["token_accuracy"] == 1.0

    def shown(self, row, task):
        return " ".join(row["gold"]), " ".join(row["predicted"])

    # Serving: transformers' token-classification pipeline, one tag per word piece

    def predictor(self, run, task, device=None, trust_remote_code=False):
        from transformers import pipeline

        tagger = pipeline(
            "token-classification",
            model=str(run.folder),
            device=device,
            trust_remote_code=trust_remote_code,
            aggregation_strategy="none",
            ignore_labels=[],  # every tag is a result, none is "outside"
        )

        def tag(examples, **options):
            return tagger((example["text"] for example in examples), **options)

        return tag, {}

    def output_row(self, row, prediction):
        pieces = [
            {
                "word": piece["word"],
                "tag": piece["entity"],
                "score": float(piece["score"]),
                "start": piece["start"],
                "end": piece["end"],
            }
            for piece in prediction
        ]
        return {**row, "predicted_tags": pieces}

    # The model card

    def usage_code(self, example, max_length):
        return (
            f'inputs = tokenizer({example}, return_tensors="pt")\n'
            "with torch.no_grad():\n"
            "    tags = model(**inputs).logits.argmax(-1)[0]\n"
            "print([model.config.id2label[int(t)] for t in tags])"
        )

    def pipeline_output(self, task):
        return f"`[{{entity, score, word, start, end}}]` per word piece of a text, entity one of {', '.join(TAGS)}"


def normalize(dataset, source):
    """The task's columns: words, tag ids, the sentence as text (predict.py's input field), idx."""
    return dataset.map(
        lambda row, i: {"tag_ids": [TAGS.index(t) for t in row["tags"]], "text": " ".join(row["words"]), "idx": i},
        with_indices=True,
    )


TOY_TASK = Task(
    name="toy_tags",
    kind="token-classification",
    title="Toy Tags",
    description="Part-of-speech Tagging",
    input_fields=("text",),
    dataset_id="local/toy-tags",
    dataset_config=None,
    dataset_name="Toy tags (20 made-up sentences)",
    language="en",
    metrics=(Metric("eval_accuracy", "accuracy", "Token accuracy", "validation", False),),
    full_eval_sizes={"validation": 8},
    tags=("toy", "pos"),
    intended_use="Showing that a task defined outside pipelines/ runs end to end",
    limitations=("Knows 16 words.",),
    licence_note="The toy sentences are made up for this test.",
    label_names=TAGS,
    example=("the bird sings",),
    normalize=normalize,
    behaviour=TokenClassification(),
)


# --- The test -------------------------------------------------------------------------------------------------


@pytest.fixture
def toy_task():
    return register_task(TOY_TASK)


def write_data(folder: Path) -> Path:
    folder.mkdir()
    for split, numbers in (("train", range(20)), ("validation", range(20, 28))):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(sentence(i)) + "\n" for i in numbers))
    return folder


def train(data_dir: Path, output_dir: Path, model_dir: Path, learning_rate: float) -> dict:
    from pipelines.tasks.kind_run import KindRun

    return KindRun.main(
        [
            "--task_name=toy_tags",
            f"--data_dir={data_dir}",
            f"--model_name_or_path={model_dir}",
            f"--output_dir={output_dir}",
            "--max_seq_length=16",
            "--max_steps=30",
            "--per_device_train_batch_size=10",
            "--per_device_eval_batch_size=8",
            f"--learning_rate={learning_rate}",
            "--logging_steps=10",
            "--seed=1",
            "--report_to=none",
            "--precision=fp32",
            "--use_cpu=true",
            "--ignore_mismatched_sizes=true",  # the tiny checkpoint has a sequence-classification head
        ]
    )


def test_a_task_defined_in_a_test_runs_end_to_end(tmp_path, tiny_bert_dir, toy_task):
    import predict

    from pipelines import reports
    from pipelines.model_card import build_model_card

    data_dir = write_data(tmp_path / "data")
    runs = {lr: tmp_path / f"run-lr{lr}" for lr in (0.02, 0.0001)}
    results = {lr: train(data_dir, folder, tiny_bert_dir, lr) for lr, folder in runs.items()}
    learned = runs[0.02]

    # Training: the kind's metric, its prediction lines, the head and labels in the config
    assert json.loads((learned / "run_info.json").read_text())["task"] == "toy_tags"
    config = json.loads((learned / "config.json").read_text())
    assert config["architectures"] == ["BertForTokenClassification"] and list(config["id2label"].values()) == list(TAGS)
    rows = [json.loads(line) for line in (learned / "predictions_validation.jsonl").read_text().splitlines()]
    assert [r["idx"] for r in rows] == list(range(8))
    assert [r["gold"] for r in rows] == [sentence(i)["tags"] for i in range(20, 28)]
    assert all(len(r["predicted"]) == len(r["words"]) for r in rows)
    # The kind's metric is the share of all words tagged right: the examples' scores weighted by their lengths
    words_right = sum(r["token_accuracy"] * len(r["words"]) for r in rows) / sum(len(r["words"]) for r in rows)
    assert results[0.02]["eval_accuracy"] == pytest.approx(words_right)
    assert results[0.02]["eval_accuracy"] > 0.9  # the tags follow the word order: a few steps learn them
    assert results[0.0001]["eval_accuracy"] < results[0.02]["eval_accuracy"]

    # The model card: the task, its metric, its labels, the kind's code sample and pipeline
    card = str(build_model_card(learned, repo_id="someone/toy-tags", image_dir=tmp_path))
    assert "fine-tuned on Toy Tags (part-of-speech tagging)" in card
    assert "| validation | Token accuracy |" in card and "pipeline_tag: token-classification" in card
    assert "NOUN, VERB, OTHER" in card and "AutoModelForTokenClassification" in card
    assert 'tokenizer("the bird sings", return_tensors="pt")' in card and "start_logits" not in card

    # predict.py: the task's input field in, the kind's pipeline's tags out, every other field kept
    inputs, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = [{"id": 1, "text": "the dog sleeps"}, {"id": 2, "text": "a girl swims today"}]
    inputs.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert predict.main([str(learned), "--input", str(inputs), "--output", str(output)]) == 0
    predicted = [json.loads(line) for line in output.read_text().splitlines()]
    assert [p["id"] for p in predicted] == [1, 2]
    for line, prediction in zip(lines, predicted):  # the pieces' character spans cover the words, in order
        words, end = [], None
        for piece in prediction["predicted_tags"]:
            assert piece["tag"] in TAGS
            piece_text = line["text"][piece["start"] : piece["end"]]
            words = words[:-1] + [words[-1] + piece_text] if piece["start"] == end else words + [piece_text]
            end = piece["end"]
        assert words == line["text"].split()
    assert [piece["tag"] for piece in predicted[0]["predicted_tags"]] == ["OTHER", "NOUN", "VERB"]

    # The report: the kind's per-example score, compared between the two runs
    summary = reports.build_report(
        [("lr 0.0001", runs[0.0001]), ("lr 0.02", runs[0.02])], tmp_path / "report", n_resamples=200
    )
    (comparison,) = summary["comparisons"]
    difference = comparison["differences"]["token_accuracy"]
    assert comparison["n_examples"] == 8
    assert difference["difference"] == pytest.approx(
        np.mean([r["token_accuracy"] for r in rows])
        - np.mean(
            [
                json.loads(line)["token_accuracy"]
                for line in (runs[0.0001] / "predictions_validation.jsonl").read_text().splitlines()
            ]
        )
    )
    assert "token_accuracy" in (tmp_path / "report" / "report.md").read_text()
