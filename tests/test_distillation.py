"""Task distillation (pipelines/distillation.py): a real teacher labels the training data, the student's loss uses it,
the teacher's logits are cached and reused, augmentation never touches dev, a distilled run resumes, bad teachers
are one error line."""

from __future__ import annotations

import json
import logging
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
import yaml
from conftest import ONE_LAYER_SCRATCH, REPO, subprocess_env

from pipelines.arguments import RecipeError
from pipelines.distillation import distillation_loss, teacher_labelled
from pipelines.distillation_augment import augment_examples, augment_text, swap_word, word_neighbours
from pipelines.distillation_teacher import TARGETS, TEACHER_COLUMN, same_tokenizer
from pipelines.task_definitions.base import CLASSIFICATION, EXTRACTIVE_QA, REGRESSION

# Made-up pairs (never dev data in training); gold labels cycle through the three classes.
ROWS = [
    {
        "premise": f"A man plays song number {i} on a guitar.",
        "hypothesis": "A man makes music." if i % 2 else "Nobody plays.",
        "label": i % 3,
    }
    for i in range(40)
]
DEV = [
    {"premise": f"A woman sings tune {i} at night.", "hypothesis": "Someone sings.", "label": i % 3} for i in range(8)
]
SQUAD = REPO / "tests" / "fixtures" / "qa" / "tiny_squad.json"


def write_data(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", ROWS), ("validation_matched", DEV), ("validation_mismatched", DEV)):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture(scope="module")
def biased_teacher(tmp_path_factory, tiny_bert_dir) -> Path:
    """A classifier that always says 'contradiction' (gold is one of three labels in turn): a teacher whose
    labels differ from the gold ones."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = tmp_path_factory.mktemp("biased-teacher")
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir)
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor([0.0, 0.0, 8.0]))
    model.config.id2label = {0: "entailment", 1: "neutral", 2: "contradiction"}
    model.config.label2id = {v: k for k, v in model.config.id2label.items()}
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(folder)
    return folder


def as_recipe(folder: Path, args: list[str]) -> list[str]:
    """The arguments as a recipe file plus nothing (run_mnli.py without a recipe reads its default recipe)."""
    recipe = folder / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({key[2:]: yaml.safe_load(value) for key, value in zip(args[::2], args[1::2])}))
    return [str(recipe)]


def student_args(data: Path, output_dir: Path, *extra: str) -> list[str]:
    return [
        *ONE_LAYER_SCRATCH,
        "--data_dir",
        str(data),
        "--max_seq_length",
        "32",
        "--per_device_train_batch_size",
        "8",
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
        "--logging_steps",
        "1",
        "--output_dir",
        str(output_dir),
        *extra,
    ]


# --- The loss -----------------------------------------------------------------------------------------------


def test_loss_is_hintons_kl_and_masks_padding_and_mse_for_regression():
    student, teacher = torch.randn(4, 3), torch.randn(4, 3)
    t = 2.0
    p_teacher = torch.softmax(teacher / t, -1)
    manual = (p_teacher * (p_teacher.log() - torch.log_softmax(student / t, -1))).sum(-1).mean() * t * t
    loss = distillation_loss(student, teacher, None, TARGETS[CLASSIFICATION], t)
    assert loss.item() == pytest.approx(manual.item(), rel=1e-5)
    assert distillation_loss(teacher, teacher, None, TARGETS[CLASSIFICATION], t).item() == pytest.approx(0, abs=1e-6)
    # QA: start and end logits per token; what the padding holds never counts.
    mask = torch.tensor([[1, 1, 1, 0, 0]])
    qa_teacher = torch.randn(1, 2, 5)
    qa_student = qa_teacher.clone()
    qa_student[..., 3:] = 50.0
    loss = distillation_loss(qa_student, qa_teacher, mask, TARGETS[EXTRACTIVE_QA], 1.0)
    assert loss.item() == pytest.approx(0, abs=1e-5)
    assert distillation_loss(student[:, :1], teacher[:, :1], None, TARGETS[REGRESSION], t).item() == pytest.approx(
        torch.mean((student[:, 0] - teacher[:, 0]) ** 2).item(), rel=1e-5
    )


# --- Augmentation -------------------------------------------------------------------------------------------


def test_augmentation_makes_new_examples_from_train_words_only():
    train = datasets.Dataset.from_list([dict(r, idx=i) for i, r in enumerate(ROWS)])
    made = augment_examples(train, ("premise", "hypothesis"), 25, seed=1, mask_token="[MASK]")
    assert len(made) == 25 and made["label"] == [0] * 25 and min(made["idx"]) == len(ROWS)
    train_pairs = {(r["premise"], r["hypothesis"]) for r in ROWS}
    train_words = {w for r in ROWS for field in ("premise", "hypothesis") for w in r[field].split()} | {"[MASK]"}
    dev_texts = {r[f] for r in DEV for f in ("premise", "hypothesis")}
    pairs = list(zip(made["premise"], made["hypothesis"]))
    assert len(set(pairs)) == 25 and not set(pairs) & train_pairs
    assert all(set(text.split()) <= train_words for pair in pairs for text in pair)
    assert not {text for pair in pairs for text in pair} & dev_texts
    again = augment_examples(train, ("premise", "hypothesis"), 25, seed=1, mask_token="[MASK]")
    assert again["premise"] == made["premise"]  # the same seed makes the same examples


def test_word_swap_takes_the_teachers_nearest_whole_words(minilm_path):
    from transformers import AutoModel, AutoTokenizer

    embeddings = AutoModel.from_pretrained(minilm_path).get_input_embeddings().weight
    vocab = AutoTokenizer.from_pretrained(minilm_path).get_vocab()
    table = word_neighbours(embeddings, vocab, {"big", "Walked", "house.", "xyzzyq", "##s", "[MASK]"})
    # Lower-cased, punctuation set aside ("house." -> "house", "[MASK]" -> "mask"); unknown words and pieces have none.
    assert set(table) == {"big", "walked", "house", "mask"}
    assert {"huge", "large"} <= set(table["big"][:5]) and "walk" in table["walked"][:5]
    assert all(len(words) == 15 and all(w.isalpha() and len(w) > 1 for w in words) for words in table.values())
    assert all(word not in words for word, words in table.items())

    text = "A man walked past the big house ."
    # No swap: exactly the texts the rules made before the swap existed (masking and n-grams only).
    long_text = "A man plays song number 7 on a guitar in the big old house ."
    kept = augment_text(long_text, random.Random(1), "[MASK]", table, p_swap=0.0)
    assert kept == "A man plays song number 7 on a [MASK] [MASK] the big old [MASK] ."
    swapped = [augment_text(text, random.Random(s), "[MASK]", table, p_swap=0.9, p_ngram=0.0) for s in range(20)]
    for new in swapped:
        for old, word in zip(text.split(), new.split(), strict=True):
            assert word in (old, "[MASK]", *table.get(old.lower(), ())), (old, word)
    assert {new.split()[4] for new in swapped} - {"big", "[MASK]"}  # "big" was swapped for a neighbour
    assert all(new.split()[0] == "A" for new in swapped)  # "a" is one letter: no whole-word neighbours
    # Punctuation stays where it was: '"House,"' becomes '"Mansion,"' or the like.
    quoted = [swap_word('"House,"', table, random.Random(s)) for s in range(5)]
    assert all(
        q.startswith('"') and q.endswith(',"') and q[1:-2] in [w.capitalize() for w in table["house"]] for q in quoted
    )


# --- Classification end to end ------------------------------------------------------------------------------


def test_student_learns_the_teachers_labels_and_the_teacher_runs_once(tmp_path, biased_teacher, caplog):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from pipelines.model_card import build_model_card
    from pipelines.tasks import mnli

    data, cache = write_data(tmp_path / "data"), tmp_path / "cache"
    distil = [
        "--teacher",
        str(biased_teacher),
        "--distill_alpha",
        "1.0",
        "--distill_temperature",
        "1.0",
        "--distill_cache_dir",
        str(cache),
        "--distill_augment",
        "12",
        "--distill_augment_swap",
        "0.3",
    ]
    first = tmp_path / "student"
    mnli.main(student_args(data, first, "--max_steps", "30", "--learning_rate", "3e-3", *distil))
    assert re.search(r"distill_augment_swap: [1-9]\d* of \d+ distinct train words have neighbours", caplog.text)

    # alpha 1: only the teacher's targets count, and the student now says what the teacher says, not the gold labels.
    lines = (first / "predictions_validation_matched.jsonl").read_text().splitlines()
    predictions = [json.loads(line) for line in lines]
    assert [p["predicted"] for p in predictions] == [2] * len(DEV)
    assert {p["gold"] for p in predictions} == {0, 1, 2}

    info = json.loads((first / "run_info.json").read_text())["teacher"]
    assert info["path"] == str(biased_teacher) and info["alpha"] == 1.0 and info["augmented_examples"] == 12
    assert info["augment_swap"] == 0.3
    train_cache, augmented_cache = (Path(c["folder"]) for c in info["caches"])
    assert [c["rows"] for c in info["caches"]] == [len(ROWS), 12] and not any(c["reused"] for c in info["caches"])

    # The cached logits are the teacher's own outputs on the train pairs, in file order.
    teacher = AutoModelForSequenceClassification.from_pretrained(biased_teacher).eval()
    tokenizer = AutoTokenizer.from_pretrained(biased_teacher)
    cached = torch.tensor(datasets.load_from_disk(str(train_cache))["teacher_logits"][:5])
    with torch.no_grad():
        direct = teacher(
            **tokenizer(
                [r["premise"] for r in ROWS[:5]],
                [r["hypothesis"] for r in ROWS[:5]],
                truncation=True,
                max_length=32,
                padding=True,
                return_tensors="pt",
            )
        ).logits
    torch.testing.assert_close(cached, direct, atol=1e-4, rtol=1e-4)

    card = str(build_model_card(first))
    assert f"Distilled from the teacher `{biased_teacher}`" in card and "12 more teacher-labelled examples" in card
    assert "the teacher's nearest words with probability 0.3" in card

    # A second run over the same data and teacher reads the cache: the teacher does not run, the files are untouched.
    mtimes = {p: p.stat().st_mtime_ns for p in (train_cache, augmented_cache)}
    caplog.clear()
    second = tmp_path / "student2"
    mnli.main(student_args(data, second, "--max_steps", "2", *distil))
    info = json.loads((second / "run_info.json").read_text())["teacher"]
    assert [c["reused"] for c in info["caches"]] == [True, True]
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert "Teacher logits reused" in caplog.text and "Running the teacher" not in caplog.text


def test_a_teacher_without_a_head_or_with_other_labels_is_refused(tmp_path, minilm_path, biased_teacher):
    from transformers import AutoModelForSequenceClassification

    from pipelines.tasks import mnli

    data = write_data(tmp_path / "data")
    with pytest.raises(RecipeError, match="has no trained head for MNLI"):
        mnli.main(student_args(data, tmp_path / "a", "--max_steps", "1", "--teacher", "minilm"))
    swapped = tmp_path / "swapped"
    model = AutoModelForSequenceClassification.from_pretrained(biased_teacher)
    model.config.id2label = {0: "contradiction", 1: "neutral", 2: "entailment"}
    model.save_pretrained(swapped)
    with pytest.raises(RecipeError, match="has the labels contradiction, neutral, entailment"):
        mnli.main(student_args(data, tmp_path / "b", "--max_steps", "1", "--teacher", str(swapped)))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # refused before any output


def test_student_embeddings_start_as_the_teachers_projected_onto_its_width(tmp_path, biased_teacher, caplog):
    from transformers import AutoModelForSequenceClassification

    from pipelines.distillation_init import project_teacher_embeddings
    from pipelines.model_card import build_model_card
    from pipelines.models import ScratchTransformerConfig, ScratchTransformerForSequenceClassification
    from pipelines.tasks import mnli

    teacher = AutoModelForSequenceClassification.from_pretrained(biased_teacher)
    words, positions = (
        teacher.bert.embeddings.word_embeddings.weight,
        teacher.bert.embeddings.position_embeddings.weight,
    )
    rows = torch.arange(1, 400)  # not the pad row (0)

    def student(width: int):
        config = ScratchTransformerConfig(
            vocab_size=words.shape[0], hidden_size=width, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=2 * width, max_position_embeddings=positions.shape[0], num_labels=3,
        )  # fmt: skip
        return ScratchTransformerForSequenceClassification(config)

    # At the teacher's own width the projection is a rotation of the centred tables: every distance is kept.
    same_width = student(words.shape[1])
    written = project_teacher_embeddings(same_width, teacher)
    assert written["tables"] == ["word_embeddings", "position_embeddings", "token_type_embeddings"]
    assert written["variance_kept"] == pytest.approx(1.0)
    embeddings = same_width.transformer.embeddings
    for mine, theirs in (
        (embeddings.word_embeddings.weight, words),
        (embeddings.position_embeddings.weight, positions),
    ):
        mine, theirs = mine[rows[:120]], theirs[rows[:120]]
        torch.testing.assert_close(torch.cdist(mine, mine), torch.cdist(theirs, theirs), atol=1e-3, rtol=1e-4)
    assert not embeddings.word_embeddings.weight[0].any()  # the pad row stays zero

    # In a run: a narrower student starts from the projection (1 step at a rate of 1e-12 leaves it there).
    data, output_dir = write_data(tmp_path / "data"), tmp_path / "student"
    narrow = ["--config_overrides", "num_hidden_layers=1,hidden_size=16,num_attention_heads=2,intermediate_size=32"]
    distil = [
        "--teacher",
        str(biased_teacher),
        "--distill_init_embeddings",
        "true",
        "--distill_cache_dir",
        str(tmp_path),
    ]
    mnli.main(student_args(data, output_dir, "--max_steps", "1", "--learning_rate", "1e-12", *narrow, *distil))
    info = json.loads((output_dir / "run_info.json").read_text())["teacher"]["init_embeddings"]
    assert info["width"] == 16 and 0.5 < info["variance_kept"] < 1.0
    assert "distill_init_embeddings: word_embeddings, position_embeddings, token_type_embeddings" in caplog.text
    assert "Its embeddings started from the teacher's, projected onto its width (16)" in str(
        build_model_card(output_dir)
    )
    trained = AutoModelForSequenceClassification.from_pretrained(output_dir).transformer.embeddings.word_embeddings
    expected = student(16)
    project_teacher_embeddings(expected, teacher)
    torch.testing.assert_close(
        trained.weight, expected.transformer.embeddings.word_embeddings.weight, atol=1e-5, rtol=0
    )

    # A student that is not from scratch keeps its own embeddings: the recipe is refused.
    pretrained = ["--model_name_or_path", str(biased_teacher), "--data_dir", str(data), "--report_to", "none"]
    with pytest.raises(RecipeError, match="starts a student from scratch"):
        mnli.main([*pretrained, "--output_dir", str(tmp_path / "refused"), "--max_steps", "1", *distil])


def test_relation_loss_compares_attention_relations_across_widths_over_real_tokens_only():
    from pipelines.distillation_relations import log_relations, relation_loss

    torch.manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    teacher = [torch.randn(2, 4, 32) for _ in range(3)]  # Q, K, V of a 32-wide teacher
    student = [torch.randn(2, 4, 16) for _ in range(3)]  # of a 16-wide student: no projection needed
    assert float(relation_loss(teacher, teacher, mask, heads=4)) == pytest.approx(0.0, abs=1e-6)
    loss = relation_loss(student, teacher, mask, heads=4)
    assert float(loss) > 0.01
    # By hand: per example, projection, relation head and real token, KL over the real keys; then the mean.
    terms = []
    for b, real in enumerate(mask.sum(1).tolist()):
        for mine, theirs in zip(student, teacher):
            for r in range(4):
                m, t = mine[b, :real, 4 * r : 4 * r + 4], theirs[b, :real, 8 * r : 8 * r + 8]
                p_s, p_t = torch.softmax(m @ m.T / 2.0, -1), torch.softmax(t @ t.T / 8**0.5, -1)
                terms.append((p_t * (p_t.log() - p_s.log())).sum(-1))  # (real,)
    expected = sum(float(kl.sum()) for kl in terms) / (3 * 4 * int(mask.sum()))
    assert float(loss) == pytest.approx(expected, rel=1e-4)
    assert float(log_relations(student[0], mask.bool(), heads=4)[0, 0, 0, 3].exp()) < 1e-6  # padded key: no weight
    # The padded token (first example, position 3) counts neither as a key nor as a query.
    changed = [x.clone() for x in student]
    for x in changed:
        x[0, 3] = 100.0
    assert float(relation_loss(changed, teacher, mask, heads=4)) == pytest.approx(float(loss), rel=1e-5)


def test_relation_distillation_adds_its_term_in_training_and_checks_the_heads(tmp_path, biased_teacher):
    from transformers import AutoModelForSequenceClassification

    from pipelines.distillation_relations import last_attention_projections
    from pipelines.model_card import build_model_card
    from pipelines.tasks import mnli

    teacher = AutoModelForSequenceClassification.from_pretrained(biased_teacher)
    last = teacher.bert.encoder.layer[-1].attention.self
    assert last_attention_projections(teacher) == [last.query, last.key, last.value]

    data = write_data(tmp_path / "data")
    distil = ["--teacher", str(biased_teacher), "--distill_cache_dir", str(tmp_path / "cache")]
    first_losses = {}
    for name, extra in (("plain", []), ("relations", ["--distill_relations", "1.0", "--distill_relation_heads", "8"])):
        output_dir = tmp_path / name
        mnli.main(student_args(data, output_dir, "--max_steps", "2", *distil, *extra))
        history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
        first_losses[name] = next(entry["loss"] for entry in history if "loss" in entry)
    # Same seed, data and weights at step 1: the relation run's loss is the plain one plus a positive term.
    assert first_losses["relations"] > first_losses["plain"] + 1e-3
    info = json.loads((tmp_path / "relations" / "run_info.json").read_text())["teacher"]["relations"]
    assert info == {"weight": 1.0, "heads": 8, "student_width": 256, "teacher_width": 32}
    assert "query, key and value relations (MiniLMv2; 8 relation heads" in str(build_model_card(tmp_path / "relations"))

    # Relation heads must divide both widths; the run stops before it writes anything.
    with pytest.raises(RecipeError, match="must divide the teacher's attention width 32"):
        mnli.main(
            student_args(data, tmp_path / "bad", *distil, "--distill_relations", "1", "--distill_relation_heads", "64")
        )
    assert not (tmp_path / "bad").exists()


def test_bad_teacher_path_is_one_error_line(tmp_path):
    data = write_data(tmp_path / "data")
    command = [
        sys.executable,
        str(REPO / "scripts" / "run_mnli.py"),
        *as_recipe(tmp_path, student_args(data, tmp_path / "out", "--teacher", str(tmp_path / "no-such-run"))),
    ]
    result = subprocess.run(command, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: teacher: {tmp_path / 'no-such-run'} is not a folder (give a finished run folder, or a "
        "model folder with a MNLI head)"
    ]


# --- Resuming -----------------------------------------------------------------------------------------------


def test_a_distilled_run_resumes_from_its_checkpoint_with_the_cached_logits(tmp_path, biased_teacher, caplog):
    data = write_data(tmp_path / "data")
    output_dir = tmp_path / "out"
    args = student_args(
        data,
        output_dir,
        "--teacher",
        str(biased_teacher),
        "--max_steps",
        "12",
        "--save_strategy",
        "steps",
        "--save_steps",
        "100",
    )
    command = [sys.executable, str(REPO / "scripts" / "run_mnli.py"), *as_recipe(tmp_path, args)]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=subprocess_env(TQDM_DISABLE="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in process.stdout:
        if "'loss'" in line:
            process.send_signal(signal.SIGTERM)
            break
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert not (output_dir / "all_results.json").exists()

    # The same command resumed, in-process (one interpreter start less).
    from pipelines.tasks import mnli

    with caplog.at_level(logging.INFO, logger="pipelines"):
        mnli.main([*command[2:], "--resume_from_checkpoint", "auto"])
    assert "Resuming from" in caplog.text and "Teacher logits reused" in caplog.text
    assert json.loads((output_dir / "trainer_state.json").read_text())["global_step"] == 12
    assert json.loads((output_dir / "run_info.json").read_text())["teacher"]["caches"][0]["reused"] is True


# --- Extractive QA ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qa_teacher(tmp_path_factory, tiny_bert_dir) -> Path:
    """The session's tiny BERT with a saved QA head (a head in the checkpoint, as a fine-tuned teacher has)."""
    from transformers import AutoTokenizer, BertForQuestionAnswering

    folder = tmp_path_factory.mktemp("qa-teacher")
    torch.manual_seed(0)
    BertForQuestionAnswering.from_pretrained(tiny_bert_dir, num_labels=2).save_pretrained(folder)  # start, end
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(folder)
    return folder


def qa_args(output_dir: Path, teacher: Path, *extra: str) -> list[str]:
    return [
        *ONE_LAYER_SCRATCH,
        "--train_file",
        str(SQUAD),
        "--validation_file",
        str(SQUAD),
        "--max_seq_length",
        "64",
        "--doc_stride",
        "16",
        "--max_query_length",
        "16",
        "--per_device_train_batch_size",
        "4",
        "--max_steps",
        "3",
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
        "--output_dir",
        str(output_dir),
        "--teacher",
        str(teacher),
        *extra,
    ]


def test_qa_student_distils_start_and_end_logits_of_every_window(tmp_path, qa_teacher):
    from transformers import AutoModelForQuestionAnswering

    from pipelines.tasks import qa

    output_dir = tmp_path / "student"
    qa.main(qa_args(output_dir, qa_teacher))
    info = json.loads((output_dir / "run_info.json").read_text())
    [cache] = info["teacher"]["caches"]
    assert cache["rows"] == info["train_windows"] > 0
    logits = datasets.load_from_disk(cache["folder"])["teacher_logits"]
    assert all(len(row) == 2 for row in logits)  # start and end

    # The cached start/end logits of a window are the teacher's own, one per token of the window.
    teacher = AutoModelForQuestionAnswering.from_pretrained(qa_teacher).eval()
    from transformers import AutoTokenizer

    from pipelines.tasks.qa import QADataArguments, load_raw_datasets, prepare_train_features

    data_args = QADataArguments(train_file=str(SQUAD), max_seq_length=64, doc_stride=16, max_query_length=16)
    raw, _ = load_raw_datasets(data_args)
    windows = prepare_train_features(raw["train"][:1], AutoTokenizer.from_pretrained(qa_teacher), data_args)
    with torch.no_grad():
        out = teacher(
            **{name: torch.tensor(windows[name][:1]) for name in ("input_ids", "attention_mask", "token_type_ids")}
        )
    assert len(logits[0][0]) == len(windows["input_ids"][0])
    direct = torch.stack([out.start_logits[0], out.end_logits[0]])
    torch.testing.assert_close(torch.tensor(logits[0]), direct, atol=1e-4, rtol=1e-4)


def test_qa_augmentation_rewrites_questions_and_the_teacher_labels_their_windows(tmp_path, qa_teacher):
    from pipelines.tasks import qa
    from pipelines.tasks.qa import QADataArguments, load_raw_datasets

    raw, _ = load_raw_datasets(QADataArguments(train_file=str(SQUAD)))
    train = raw["train"]
    made = augment_examples(train, ("question",), 6, seed=0, mask_token="[MASK]")
    assert len(made) == 6 and not set(made["question"]) & set(train["question"])
    assert len(set(made["id"])) == 6 and not set(made["id"]) & set(train["id"])
    sources = {row["id"]: row for row in train}
    for row in made:  # the context and the rest are the source question's: only the question is rewritten
        source = sources[row["id"].rsplit("-augmented-", 1)[0]]
        assert row["context"] == source["context"] and row["title"] == source["title"]
        assert set(row["question"].split()) <= set(source["question"].split()) | {"[MASK]"}

    # A window only the teacher labelled is labelled with the teacher's start and end tokens.
    windows = datasets.Dataset.from_dict(
        {
            "start_positions": [0, 0],
            "end_positions": [0, 0],
            TEACHER_COLUMN: [[[0.0, 3.0, 1.0], [0.0, 1.0, 5.0]], [[9.0, 0.0], [1.0, 2.0]]],
        }
    )
    labelled = teacher_labelled(windows, TARGETS[EXTRACTIVE_QA])
    assert labelled["start_positions"] == [1, 0] and labelled["end_positions"] == [2, 1]

    # End to end: the new questions' windows are added to the train windows, each with the teacher's logits.
    output_dir = tmp_path / "student"
    qa.main(qa_args(output_dir, qa_teacher, "--distill_augment", "6"))
    info = json.loads((output_dir / "run_info.json").read_text())
    assert info["teacher"]["augmented_examples"] == 6
    train_cache, augmented_cache = info["teacher"]["caches"]
    assert train_cache["rows"] == info["train_windows"] - augmented_cache["rows"]
    assert augmented_cache["rows"] == info["teacher"]["augmented_features"] >= 6


def test_qa_transfer_set_is_the_next_train_questions_labelled_by_the_teacher_only(tmp_path, qa_teacher):
    from pipelines.model_card_text import teacher_text
    from pipelines.run_folder import RunFolder
    from pipelines.tasks import qa

    output_dir = tmp_path / "student"
    qa.main(qa_args(output_dir, qa_teacher, "--max_train_samples", "3", "--distill_transfer", "2"))
    info = json.loads((output_dir / "run_info.json").read_text())
    assert info["train_examples"] == 3 and info["teacher"]["transfer_examples"] == 2
    train_cache, transfer_cache = info["teacher"]["caches"]
    assert transfer_cache["rows"] == info["teacher"]["transfer_features"] == info["train_windows"] - train_cache["rows"]
    # The transfer windows are the file's 4th and 5th questions, labelled by the teacher: the start and end tokens
    # the student trained on are the teacher's argmax, not the gold answer's.
    logits = datasets.load_from_disk(transfer_cache["folder"])[TEACHER_COLUMN]
    labelled = teacher_labelled(
        datasets.Dataset.from_dict(
            {"start_positions": [0] * len(logits), "end_positions": [0] * len(logits), TEACHER_COLUMN: logits}
        ),
        TARGETS[EXTRACTIVE_QA],
    )
    assert labelled["start_positions"] == [int(np.argmax(row[0])) for row in logits]
    assert "next 2 examples after its own, labelled by the teacher only" in teacher_text(RunFolder.read(output_dir))

    with pytest.raises(RecipeError, match="distill_transfer takes the train examples after the first max_train"):
        qa.main(qa_args(tmp_path / "no-limit", qa_teacher, "--distill_transfer", "2"))


def test_qa_distillation_needs_a_shared_tokenizer(tmp_path, qa_teacher, minilm_path):
    from transformers import AutoTokenizer, BertConfig, BertForQuestionAnswering

    from pipelines.tasks import qa

    other = tmp_path / "other-tokenizer"
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    tokenizer.add_tokens(["qqzzy"])
    assert not same_tokenizer(tokenizer, AutoTokenizer.from_pretrained(minilm_path))
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertForQuestionAnswering(config).save_pretrained(other)
    tokenizer.save_pretrained(other)
    with pytest.raises(RecipeError, match="distillation needs a shared tokenizer"):
        qa.main(qa_args(tmp_path / "b", other))
