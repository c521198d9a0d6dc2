"""Local SQuAD-format JSON files for extractive QA: read and check every question, and split one file by article.

Errors name the file, the question (id or position) and the field. pipelines/tasks/qa.py loads its local data
through these functions (SQuAD v1.1 and KorQuAD 1.0 files have the same format).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pipelines.data_files import DataError, DataFileNotFound


def read_squad_file(path: str | Path) -> list[dict[str, Any]]:
    """Read a SQuAD v1.1-format JSON file into flat rows (id, title, context, question, answers), checked.

    Every question is checked; all problems are reported at once (the first 10 in the message).
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileNotFound(
            f"QA data file not found: {path} (relative paths start from the working directory: {Path.cwd()})"
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON (line {error.lineno}, column {error.colno}): {error.msg}") from error
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise DataError(
            f"{path}: not the SQuAD layout; expected "
            '{"data": [{"title": ..., "paragraphs": [{"context": ..., "qas": [{"id", "question", "answers"}]}]}]}'
        )

    rows, problems, seen_ids = [], [], set()
    for article_index, article in enumerate(document["data"]):
        title = article.get("title", "") if isinstance(article, dict) else None
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            problems.append(f"data[{article_index}]: field 'paragraphs' is missing or not a list")
            continue
        for paragraph_index, paragraph in enumerate(paragraphs):
            where = f"data[{article_index}].paragraphs[{paragraph_index}]"
            context = paragraph.get("context") if isinstance(paragraph, dict) else None
            qas = paragraph.get("qas") if isinstance(paragraph, dict) else None
            if not isinstance(context, str) or not context.strip():
                problems.append(f"{where}: field 'context' is missing or empty")
                continue
            if not isinstance(qas, list):
                problems.append(f"{where}: field 'qas' is missing or not a list")
                continue
            for qa in qas:
                question_problems = _check_question(qa, context, seen_ids)
                if question_problems:
                    problems.extend(question_problems)
                    continue
                seen_ids.add(qa["id"])
                rows.append(
                    {
                        "id": qa["id"],
                        "title": title or "",
                        "context": context,
                        "question": qa["question"],
                        "answers": {
                            "text": [answer["text"] for answer in qa["answers"]],
                            "answer_start": [answer["answer_start"] for answer in qa["answers"]],
                        },
                    }
                )
    if problems:
        listed = "\n  - ".join(problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise DataError(f"{path}: {len(problems)} problem(s):\n  - {listed}{more}")
    if not rows:
        raise DataError(f"{path}: no questions found")
    return rows


def _check_question(qa: Any, context: str, seen_ids: set[str]) -> list[str]:
    """Problems of one question entry, each naming the question id and the field."""
    if not isinstance(qa, dict) or not isinstance(qa.get("id"), str) or not qa["id"]:
        return [f"a question without a string 'id': {str(qa)[:80]}"]
    where = f"question id '{qa['id']}'"
    problems = []
    if qa["id"] in seen_ids:
        problems.append(f"{where}: duplicate id (ids must be unique: predictions are keyed by id)")
    if not isinstance(qa.get("question"), str) or not qa["question"].strip():
        problems.append(f"{where}: field 'question' is missing or empty")
    answers = qa.get("answers")
    if not isinstance(answers, list) or not answers or qa.get("is_impossible"):
        problems.append(
            f"{where}: field 'answers' is missing or empty (SQuAD 2.0 unanswerable questions are not supported)"
        )
        return problems
    for j, answer in enumerate(answers):
        text = answer.get("text") if isinstance(answer, dict) else None
        start = answer.get("answer_start") if isinstance(answer, dict) else None
        if not isinstance(text, str) or not text:
            problems.append(f"{where}: field 'answers[{j}].text' is missing or empty")
        elif not isinstance(start, int) or isinstance(start, bool):
            problems.append(f"{where}: field 'answers[{j}].answer_start' is {start!r}, not an integer")
        elif start < 0 or start + len(text) > len(context):
            problems.append(
                f"{where}: field 'answers[{j}].answer_start' = {start} puts the answer {text!r} outside its context "
                f"({len(context)} characters)"
            )
        elif context[start : start + len(text)] != text:
            problems.append(
                f"{where}: field 'answers[{j}].answer_start' = {start} does not match 'answers[{j}].text': "
                f"the context there reads {context[start : start + len(text)]!r}, the answer text is {text!r}"
            )
    return problems


def split_by_article(
    rows: list[dict[str, Any]], fraction: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Split questions into (train, held-out) so that each article (title) lies wholly on one side.

    Questions about one article share its text, so a split by question would let the model train on the very
    paragraphs it is evaluated on. Articles are ordered by sha256 of "seed:title" and the first
    round(fraction * articles) are held out: the same seed and titles always give the same split, on any
    machine and Python version. Rows keep their file order.
    """
    titles = sorted({row["title"] for row in rows})
    if "" in titles:
        raise DataError("Splitting by article needs a 'title' for every article; some articles have none.")
    if len(titles) < 2:
        raise DataError(f"Splitting by article needs at least 2 articles, found {len(titles)}.")
    n_heldout = min(max(1, round(fraction * len(titles))), len(titles) - 1)
    by_hash = sorted(titles, key=lambda title: hashlib.sha256(f"{seed}:{title}".encode("utf-8")).hexdigest())
    heldout_titles = set(by_hash[:n_heldout])
    train_rows = [row for row in rows if row["title"] not in heldout_titles]
    heldout_rows = [row for row in rows if row["title"] in heldout_titles]
    description = {
        "method": "articles ordered by sha256('<seed>:<title>'); the first round(fraction * articles) are held out",
        "fraction": fraction,
        "seed": seed,
        "train_articles": sorted(set(titles) - heldout_titles),
        "validation_articles": sorted(heldout_titles),
        "train_questions": len(train_rows),
        "validation_questions": len(heldout_rows),
    }
    return train_rows, heldout_rows, description
