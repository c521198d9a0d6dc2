"""Inference: MNLI pairs through transformers' text-classification pipeline, and the extractive-QA pipeline,
on tiny models (a BERT and our ScratchTransformer), and
scripts/predict.py over JSON lines for a real tiny MNLI run and a QA run folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, subprocess_env
from test_hub_and_cards import make_mnli_run, make_qa_run
from transformers import AutoTokenizer, BertConfig, BertForQuestionAnswering, pipeline

from pipelines.inference import QA_TASK, WindowSettings, classification_pipeline, question_answering_pipeline

LABELS = ["entailment", "neutral", "contradiction"]
PAIRS = [
    {"premise": "A man is playing a guitar on stage.", "hypothesis": "A man is making music."},
    {"premise": "A dog sleeps on the sofa.", "hypothesis": "The dog runs in the park."},
    {"premise": "She bought a car.", "hypothesis": "The car is red."},
]
CONTEXT = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is named after "
    "the engineer Gustave Eiffel, whose company designed and built the tower from 1887 to 1889. "
) * 3
QUESTIONS = [
    {"question": "Who is the tower named after?", "context": CONTEXT},
    {"question": "Where?", "context": "In Paris."},
]


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    return AutoTokenizer.from_pretrained(minilm_path)


@pytest.fixture(scope="module")
def nli_model(tiny_bert_dir):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(
        tiny_bert_dir, id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)}
    ).eval()


def qa_models(tokenizer):
    from pipelines.models import ScratchTransformerForQuestionAnswering, config_from_preset

    torch.manual_seed(0)
    scratch = ScratchTransformerForQuestionAnswering(
        config_from_preset("tiny", vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    )
    bert = BertForQuestionAnswering(
        BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
        )
    )
    return {"scratch_transformer": scratch.eval(), "bert": bert.eval()}


# --- NLI --------------------------------------------------------------------------------------------------------


def nli_pipeline(model, tokenizer):
    """MNLI pairs through transformers' text-classification pipeline (text / text_pair)."""
    return classification_pipeline(model, ("premise", "hypothesis"), tokenizer=tokenizer)


def test_nli_pipeline_labels_scores_and_batching(nli_model, tokenizer):
    nli = nli_pipeline(nli_model, tokenizer)
    one = nli(PAIRS[0])
    assert set(one) == {"label", "score", "scores"} and list(one["scores"]) == LABELS
    assert one["score"] == max(one["scores"].values()) and one["scores"][one["label"]] == one["score"]
    assert sum(one["scores"].values()) == pytest.approx(1.0)

    batch = tokenizer(PAIRS[0]["premise"], PAIRS[0]["hypothesis"], return_tensors="pt")
    with torch.no_grad():
        expected = nli_model(**batch).logits.softmax(-1)[0]
    assert [one["scores"][label] for label in LABELS] == pytest.approx(expected.tolist(), abs=1e-6)

    one_by_one = [nli(pair) for pair in PAIRS]
    batched = list(nli(PAIRS, batch_size=3))  # padded together: the same scores
    for single, in_batch in zip(one_by_one, batched):
        assert single["label"] == in_batch["label"]
        assert single["scores"]["neutral"] == pytest.approx(in_batch["scores"]["neutral"], abs=1e-5)
    # The same as transformers' own pipeline called with text / text_pair.
    direct = pipeline("text-classification", model=nli_model, tokenizer=tokenizer, top_k=None)(
        {"text": PAIRS[0]["premise"], "text_pair": PAIRS[0]["hypothesis"]}
    )
    assert {d["label"]: d["score"] for d in direct} == pytest.approx(one["scores"], abs=1e-6)


def test_nli_pipeline_errors_name_the_field(nli_model, tokenizer):
    nli = nli_pipeline(nli_model, tokenizer)
    with pytest.raises(ValueError, match="'hypothesis' is missing"):
        nli({"premise": "A man sleeps."})
    with pytest.raises(ValueError, match="'premise' is empty"):
        nli({"premise": " ", "hypothesis": "x"})


def test_nli_pipeline_truncates_to_the_models_positions(tokenizer):
    from pipelines.models import ScratchTransformerForSequenceClassification, config_from_preset

    model = ScratchTransformerForSequenceClassification(
        config_from_preset(
            "tiny",
            vocab_size=len(tokenizer),
            num_labels=3,
            id2label=dict(enumerate(LABELS)),
            label2id={n: i for i, n in enumerate(LABELS)},
        )
    ).eval()
    long_premise = "word " * 500  # far beyond the tiny preset's 64 positions
    assert nli_pipeline(model, tokenizer)({"premise": long_premise, "hypothesis": "A short one."})["label"] in LABELS


# --- Extractive QA ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("architecture", ["scratch_transformer", "bert"])
def test_question_answering_pipeline(architecture, tokenizer):
    model = qa_models(tokenizer)[architecture]
    qa = question_answering_pipeline(model, tokenizer)
    assert isinstance(qa, pipeline(QA_TASK, model=model, tokenizer=tokenizer).__class__)
    answers = [qa(question) for question in QUESTIONS]
    for answer, question in zip(answers, QUESTIONS):
        assert set(answer) == {"answer", "score", "start", "end"} and 0 < answer["score"] <= 1
        assert answer["answer"] and question["context"][answer["start"] : answer["end"]] == answer["answer"]
    window = WindowSettings.for_model(model, tokenizer)
    assert window.max_seq_length == min(384, model.config.max_position_embeddings)
    assert len(tokenizer(CONTEXT)["input_ids"]) > window.max_seq_length  # the long context really needs windows

    batched = qa(QUESTIONS, batch_size=4)  # windows of both questions padded into batches
    assert [a["answer"] for a in batched] == [a["answer"] for a in answers]
    assert [a["score"] for a in batched] == pytest.approx([a["score"] for a in answers], abs=1e-5)


def test_question_answering_matches_direct_span_choice(tokenizer):
    """A context that fits one window: the answer is the best valid (start, end) pair of the model's own logits."""
    model = qa_models(tokenizer)["bert"]
    question, context = "Who designed it?", "Gustave Eiffel's company designed and built the tower."
    answer = question_answering_pipeline(model, tokenizer)({"question": question, "context": context})

    encoded = tokenizer(question, context, return_offsets_mapping=True, return_tensors="pt")
    offsets = encoded.pop("offset_mapping")[0].tolist()
    context_tokens = [i for i, s in enumerate(encoded.sequence_ids(0)) if s == 1]
    with torch.no_grad():
        output = model(**encoded)
    start_logits, end_logits = output.start_logits[0], output.end_logits[0]
    best = max(
        ((s, e) for s in context_tokens for e in context_tokens if s <= e < s + 30),
        key=lambda span: float(start_logits[span[0]] + end_logits[span[1]]),
    )
    assert (answer["start"], answer["end"]) == (offsets[best[0]][0], offsets[best[1]][1])


# --- predict.py -------------------------------------------------------------------------------------------------


def run_predict(run_dir: Path, input_path: Path, output_path: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        str(REPO / "scripts" / "predict.py"),
        str(run_dir),
        "--input",
        str(input_path),
        "--output",
        str(output_path),
        "--batch-size",
        "2",
        *extra,
    ]
    return subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=300)


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.slow
def test_predict_script_on_a_tiny_mnli_run(tmp_path_factory, data_dir, tmp_path):
    run = make_mnli_run(tmp_path_factory, data_dir)
    rows = [dict(pair, id=f"pair-{i}", label=i % 3) for i, pair in enumerate(PAIRS * 2)]
    output = tmp_path / "out" / "predictions.jsonl"
    result = run_predict(run, write_jsonl(tmp_path / "in.jsonl", rows), output)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "predicting (mnli)" in result.stderr  # the progress bar

    predictions = [json.loads(line) for line in output.read_text().splitlines()]
    assert [p["id"] for p in predictions] == [r["id"] for r in rows]  # same order, input fields kept
    assert all(p["label"] == r["label"] for p, r in zip(predictions, rows))
    assert all(p["predicted_label"] in LABELS and sum(p["scores"].values()) == pytest.approx(1.0) for p in predictions)

    direct = nli_pipeline(run, None)(PAIRS[0])
    assert predictions[0]["scores"] == pytest.approx(direct["scores"], abs=1e-5)


@pytest.mark.slow
def test_predict_script_names_line_and_field(tmp_path_factory, data_dir, tmp_path):
    run = make_mnli_run(tmp_path_factory, data_dir)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(PAIRS[0]) + "\n" + json.dumps({"premise": "Only a premise."}) + "\n")
    result = run_predict(run, bad, tmp_path / "out.jsonl")
    assert result.returncode == 2  # bad input: one line, status 2 (pipelines/cli.py)
    assert "bad.jsonl, line 2: field 'hypothesis' is missing" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.slow
def test_predict_script_on_a_tiny_qa_run_gives_the_runs_own_answers(tmp_path_factory, tiny_bert_dir, tmp_path):
    """predict.py over the questions the run evaluated on: the same answers as the run's predictions file, since
    both use the recipe's windows and the QA task's span selection."""
    run = make_qa_run(tmp_path_factory, tiny_bert_dir)
    fixture = json.loads((REPO / "tests" / "fixtures" / "qa" / "tiny_squad.json").read_text())
    rows = [
        {"id": qa["id"], "question": qa["question"], "context": paragraph["context"]}
        for article in fixture["data"]
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    ]
    output = tmp_path / "answers.jsonl"
    result = run_predict(run, write_jsonl(tmp_path / "questions.jsonl", rows), output, "--batch-size", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "predicting (qa)" in result.stderr

    answers = [json.loads(line) for line in output.read_text().splitlines()]
    assert [a["id"] for a in answers] == [r["id"] for r in rows]
    for answer in answers:
        assert answer["context"][answer["start"] : answer["end"]] == answer["predicted_answer"]
    evaluated = json.loads((run / "predictions_validation.json").read_text())
    assert {a["id"]: a["predicted_answer"] for a in answers} == evaluated
