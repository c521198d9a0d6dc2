"""MNLI: data loading in every format and label form, clear errors, metrics, recipes, and a real launched run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import datasets
import pytest
import torch
import yaml
from conftest import REPO, launch_command, subprocess_env

from pipelines.arguments import ModelArguments, RecipeError, TrackingArguments, parse_recipe
from pipelines.data_files import DataError
from pipelines.metrics import load_metric
from pipelines.tasks.mnli import LABEL_NAMES, MnliDataArguments, load_raw_datasets

ROWS = [
    {"premise": "A man is playing a guitar.", "hypothesis": "A man plays music.", "label": 0, "genre": "fiction"},
    {"premise": "A dog runs in the park.", "hypothesis": "The dog is asleep.", "label": 2, "genre": "fiction"},
    {"premise": "She bought a car.", "hypothesis": "The car is red.", "label": 1, "genre": "travel"},
]


def write_split(folder: Path, split: str, rows: list[dict], suffix: str) -> Path:
    path = folder / f"{split}{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif suffix == ".json":
        path.write_text(json.dumps(rows), encoding="utf-8")
    elif suffix in (".csv", ".tsv"):
        sep = "," if suffix == ".csv" else "\t"
        lines = [sep.join(rows[0])] + [sep.join(str(v) for v in r.values()) for r in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif suffix == ".parquet":
        datasets.Dataset.from_list(rows).to_parquet(str(path))
    return path


def write_data_dir(folder: Path, rows=ROWS, suffix=".jsonl") -> Path:
    for split in ("train", "validation_matched", "validation_mismatched"):
        write_split(folder, split, rows, suffix)
    return folder


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".tsv", ".parquet"])
@pytest.mark.parametrize("label_form", ["ids", "names"])
def test_load_every_format_and_label_form(tmp_path, suffix, label_form):
    rows = [dict(r, label=LABEL_NAMES[r["label"]] if label_form == "names" else r["label"]) for r in ROWS]
    raw = load_raw_datasets(MnliDataArguments(data_dir=str(write_data_dir(tmp_path, rows, suffix))))
    assert set(raw) == {"train", "validation_matched", "validation_mismatched"}
    train = raw["train"]
    assert train["label"] == [0, 2, 1]
    assert train["premise"][1] == "A dog runs in the park."
    assert train["idx"] == [0, 1, 2]
    assert train.features["label"].names == LABEL_NAMES
    assert train["genre"] == ["fiction", "fiction", "travel"]


def test_official_multinli_columns_and_no_majority_rows(tmp_path):
    rows = [
        {"sentence1": r["premise"], "sentence2": r["hypothesis"], "gold_label": LABEL_NAMES[r["label"]]} for r in ROWS
    ]
    rows.append({"sentence1": "x y", "sentence2": "z", "gold_label": "-"})
    raw = load_raw_datasets(MnliDataArguments(data_dir=str(write_data_dir(tmp_path, rows))))
    assert len(raw["train"]) == 3  # the '-' pair is dropped, as GLUE does
    assert raw["train"]["label"] == [0, 2, 1]


def test_max_samples(tmp_path):
    raw = load_raw_datasets(
        MnliDataArguments(data_dir=str(write_data_dir(tmp_path)), max_train_samples=2, max_eval_samples=1)
    )
    assert len(raw["train"]) == 2 and len(raw["validation_matched"]) == 1 and len(raw["validation_mismatched"]) == 1


def _error_for(tmp_path, train_text: str | bytes, suffix=".jsonl") -> str:
    write_data_dir(tmp_path)
    path = tmp_path / f"train{suffix}"
    if suffix != ".jsonl":
        (tmp_path / "train.jsonl").unlink()
    path.write_bytes(train_text if isinstance(train_text, bytes) else train_text.encode("utf-8"))
    with pytest.raises(DataError) as error:
        load_raw_datasets(MnliDataArguments(data_dir=str(tmp_path)))
    return str(error.value)


def test_error_bad_label_names_file_line_and_field(tmp_path):
    lines = [json.dumps(ROWS[0]), json.dumps(dict(ROWS[1], label=7))]
    message = _error_for(tmp_path, "\n".join(lines) + "\n")
    assert "train.jsonl, line 2" in message and "'label'" in message and "7" in message


def test_error_unknown_label_name(tmp_path):
    message = _error_for(tmp_path, json.dumps(dict(ROWS[0], label="maybe")) + "\n")
    assert "line 1" in message and "'maybe'" in message and "entailment" in message


def test_error_empty_premise(tmp_path):
    lines = [json.dumps(ROWS[0]), json.dumps(ROWS[1]), json.dumps(dict(ROWS[2], premise="  "))]
    message = _error_for(tmp_path, "\n".join(lines))
    assert "line 3" in message and "'premise' is empty" in message


def test_error_malformed_json_line(tmp_path):
    message = _error_for(tmp_path, json.dumps(ROWS[0]) + '\n{"premise": "a", \n')
    assert "train.jsonl, line 2" in message and "malformed JSON" in message


def test_error_non_utf8(tmp_path):
    message = _error_for(tmp_path, (json.dumps(ROWS[0]) + "\n").encode() + b'{"premise": "caf\xe9"}\n')
    assert "line 2" in message and "not UTF-8" in message


def test_error_missing_column(tmp_path):
    message = _error_for(tmp_path, "premise,label\nhello,0\n", suffix=".csv")
    assert "train.csv" in message and "hypothesis" in message


def test_error_missing_file_and_unsupported_format(tmp_path):
    (tmp_path / "train.jsonl").write_text(json.dumps(ROWS[0]) + "\n")
    with pytest.raises(DataError, match="validation_matched"):
        load_raw_datasets(MnliDataArguments(data_dir=str(tmp_path)))
    with pytest.raises(DataError, match="not found"):
        load_raw_datasets(MnliDataArguments(train_file=str(tmp_path / "nope.jsonl")))
    (tmp_path / "train.xml").write_text("<x/>")
    with pytest.raises(DataError, match="unsupported format '.xml'"):
        load_raw_datasets(MnliDataArguments(train_file=str(tmp_path / "train.xml")))


def test_hub_failures_say_how_to_use_local_files():
    # HF_HUB_OFFLINE is set by conftest: the Hub is unreachable, as on this machine.
    with pytest.raises(DataError, match="data_dir"):
        load_raw_datasets(MnliDataArguments())
    from transformers import AutoConfig

    from pipelines.hub import load_pretrained

    with pytest.raises(OSError, match="local folder"):
        load_pretrained(AutoConfig, "distilbert-base-uncased")


def test_nli_metric_known_values():
    metric = load_metric("nli")
    result = metric.compute(predictions=[0, 1, 2, 2, 0], references=[0, 1, 1, 2, 2], num_labels=3)
    assert result["accuracy"] == pytest.approx(3 / 5)
    # per-label F1: entailment 2/3 (TP1, predicted 2, gold 1), neutral 2/3, contradiction 1/2
    assert result["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1 / 2) / 3)
    assert result["confusion_matrix"] == [[1, 0, 0], [0, 1, 1], [1, 0, 1]]


def test_recipe_parsing(tmp_path):
    from transformers import TrainingArguments

    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "model_name_or_path: minilm\nlearning_rate: 2e-5\nmax_seq_length: 64\noutput_dir: out\nwandb_tags: [a]\n"
    )
    types = (ModelArguments, MnliDataArguments, TrackingArguments, TrainingArguments)
    model_args, data_args, tracking_args, training_args, resolved = parse_recipe(
        types, [str(recipe), "--max_seq_length", "32"]
    )
    assert training_args.learning_rate == 2e-5 and isinstance(training_args.learning_rate, float)
    assert data_args.max_seq_length == 32  # the command line wins over the recipe
    assert training_args.train_sampling_strategy == "group_by_length"  # project default
    assert tracking_args.wandb_tags == ["a"]
    assert resolved["max_seq_length"] == 32
    _, _, _, _, resolved = parse_recipe(types, [str(recipe), "--save_strategy", "no"])
    assert yaml.safe_load(yaml.safe_dump(resolved))["save_strategy"] == "no"  # enums are saved as plain strings
    recipe.write_text("model_name_or_path: minilm\nlearning_rat: 2e-5\n")
    with pytest.raises(RecipeError, match=r"r\.yaml: unknown key 'learning_rat'. Did you mean 'learning_rate'"):
        parse_recipe(types, [str(recipe)])
    with pytest.raises(RecipeError, match="command line: unknown key 'max_seq_lenght'"):
        parse_recipe(types, ["--model_name_or_path", "minilm", "--max_seq_lenght", "3"])


def test_shipped_recipes_parse():
    from transformers import TrainingArguments

    from pipelines.lora import PeftArguments

    types = (ModelArguments, MnliDataArguments, TrackingArguments, PeftArguments, TrainingArguments)
    for recipe in sorted((REPO / "configs" / "mnli").glob("*.yaml")):
        header = recipe.read_text().splitlines()[0]
        assert header.startswith("# accelerate launch") and str(recipe.relative_to(REPO)) in header, recipe
        parse_recipe(types, [str(recipe)])


@pytest.mark.slow
def test_accelerate_launch_end_to_end(tmp_path, data_dir, tiny_bert_dir):
    """A real `accelerate launch` of a tiny model on real MNLI rows; outputs and the offline W&B run are checked."""
    small = tmp_path / "data"
    small.mkdir()
    for split, n in (("train", 64), ("validation_matched", 40), ("validation_mismatched", 30)):
        lines = (data_dir / "mnli" / f"{split}.jsonl").read_text().splitlines()[:n]
        (small / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    output_dir = tmp_path / "run"
    recipe = tmp_path / "tiny.yaml"
    # No precision key: auto decides (the accelerate config leaves it to the recipe): bf16 where native, else fp32.
    recipe.write_text(
        yaml.safe_dump(
            {
                "model_name_or_path": str(tiny_bert_dir),
                "data_dir": str(small),
                "max_seq_length": 64,
                "output_dir": str(output_dir),
                "max_steps": 6,
                "per_device_train_batch_size": 16,
                "per_device_eval_batch_size": 16,
                "learning_rate": 1e-3,
                "logging_steps": 2,
                "seed": 3,
                "report_to": "wandb",
                "wandb_project": "pipelines-tests",
                "wandb_group": "e2e",
                "wandb_job_type": "scratch",
                "wandb_tags": ["test"],
            }
        )
    )
    result = subprocess.run(
        launch_command("scripts/run_mnli.py", recipe),
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "wandb sync" in result.stdout + result.stderr  # says how to upload the offline run

    results = json.loads((output_dir / "all_results.json").read_text())
    for key in (
        "eval_matched_accuracy",
        "eval_mismatched_accuracy",
        "eval_matched_macro_f1",
        "train_samples_per_second",
    ):
        assert key in results, key
    assert sum(map(sum, results["eval_matched_confusion_matrix"])) == 40
    assert (output_dir / "model.safetensors").is_file() and (output_dir / "tokenizer.json").is_file()
    run_info = json.loads((output_dir / "run_info.json").read_text())
    native = torch.backends.cpu.get_cpu_capability().startswith("AVX512") and (
        torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    )
    assert run_info["mixed_precision"] == ("bf16" if native else "no")
    assert (
        run_info["precision"]["source"] == "auto"
        and f"Precision: {'bf16' if native else 'fp32'} (auto" in result.stdout
    )

    predictions = [
        json.loads(line) for line in (output_dir / "predictions_validation_matched.jsonl").read_text().splitlines()
    ]
    assert [p["idx"] for p in predictions] == list(range(40))  # file order, although evaluated by length
    gold = [json.loads(line)["label"] for line in (small / "validation_matched.jsonl").read_text().splitlines()]
    assert [p["gold"] for p in predictions] == gold
    accuracy = sum(p["gold"] == p["predicted"] for p in predictions) / 40
    assert accuracy == pytest.approx(results["eval_matched_accuracy"])
    assert all(abs(sum(p["probabilities"]) - 1) < 1e-4 for p in predictions)
    history = json.loads((output_dir / "log_history.json").read_text())
    assert any("loss" in row for row in history)

    from pipelines.tracking import find_offline_runs, read_offline_run

    runs = find_offline_runs(output_dir)
    assert len(runs) == 1
    run = read_offline_run(runs[0])
    assert run["run"]["group"] == "e2e" and run["run"]["job_type"] == "scratch" and run["run"]["tags"] == ["test"]
    assert run["summary"]["eval_matched_accuracy"] == pytest.approx(results["eval_matched_accuracy"])
    assert run["summary"]["eval_mismatched_accuracy"] == pytest.approx(results["eval_mismatched_accuracy"])
    logged_losses = [row["train/loss"] for row in run["history"] if "train/loss" in row]
    assert len(logged_losses) == 3
    assert run["config"]["run_info"]["parameters"]["total"] == run_info["parameters"]["total"]
    assert run["config"]["precision"] == run_info["precision"]["precision"]  # a column in the W&B runs table


def test_predictions_come_back_in_dataset_order(tmp_path, tiny_bert_dir):
    """With length-grouped training batches, predict() must still return rows in the dataset's order."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainingArguments

    from pipelines.training import PipelineTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir)
    texts = [" ".join(["word"] * (1 + i % 37)) for i in range(300)]
    encoded = tokenizer(texts, ["a hypothesis"] * 300)
    rows = datasets.Dataset.from_dict({**encoded, "label": [i % 3 for i in range(300)]})
    rows = rows.add_column("length", [len(ids) for ids in rows["input_ids"]])
    args = TrainingArguments(
        output_dir=str(tmp_path),
        use_cpu=True,
        report_to=[],
        per_device_eval_batch_size=8,
        train_sampling_strategy="group_by_length",
    )
    output = PipelineTrainer(model=model, args=args, processing_class=tokenizer).predict(rows)
    assert output.label_ids.tolist() == rows["label"]


def test_length_grouped_batches_come_in_shuffled_order(tmp_path, tiny_bert_dir):
    """The project's trainer keeps transformers' length-grouped batches but not their long-to-short order."""
    import datasets
    import torch
    from transformers import AutoModelForSequenceClassification, TrainingArguments
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from pipelines.training import PipelineTrainer, ShuffledLengthGroups

    lengths = [int(n) for n in torch.randint(5, 120, (640,), generator=torch.Generator().manual_seed(0))]
    dataset = datasets.Dataset.from_dict({"input_ids": [[1] * n for n in lengths], "length": lengths})
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        use_cpu=True,
        report_to=[],
        train_sampling_strategy="group_by_length",
        seed=0,
    )
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=3)
    trainer = PipelineTrainer(model=model, args=args, train_dataset=dataset)
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, ShuffledLengthGroups)

    torch.manual_seed(1)
    grouped = list(LengthGroupedSampler(8, lengths=lengths))
    torch.manual_seed(1)
    shuffled = list(ShuffledLengthGroups(LengthGroupedSampler(8, lengths=lengths)))

    def batches(order):
        return [tuple(order[i : i + 8]) for i in range(0, len(order), 8)]

    # every index once, and the same batches (the same padding) ...
    assert sorted(shuffled) == list(range(640)) and sorted(batches(shuffled)) == sorted(batches(grouped))
    # ... but no longer in runs of descending length: consecutive batches' maximum lengths go down about half the time

    def maxima(order):
        return [max(lengths[i] for i in b) for b in batches(order)]

    def falls(m):
        return sum(a > b for a, b in zip(m, m[1:])) / (len(m) - 1)

    assert falls(maxima(grouped)) > 0.9
    assert 0.3 < falls(maxima(shuffled)) < 0.7
