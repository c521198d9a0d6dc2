"""Start a scratch student's embeddings from its teacher's (`distill_init_embeddings: true`).

DistilBERT starts its student from the teacher's own weights (every other layer), and much of what it keeps comes
from that start. Our student is narrower than the teacher (small-3l-4h: 256 wide; MiniLM: 384), so its layers cannot
be copied, but its embedding tables can be: the teacher's word table, centred, is projected onto its top principal
directions, as many as the student is wide, and the position and segment tables onto the same directions (so the
student's sum of the three is the projection of the teacher's centred sum). The rest of the student stays random.
This is one more channel from the teacher to the student, beside the logits: the teacher's caveat (what MiniLM was
trained on) holds for it too. The student must read the teacher's tokens: the same tokenizer (checked by the caller).
"""

from __future__ import annotations

import torch

from pipelines.arguments import RecipeError

TABLES = ("word_embeddings", "position_embeddings", "token_type_embeddings")


def embedding_tables(model, who: str) -> dict[str, torch.nn.Embedding]:
    """The word, position and segment tables of a BERT-shaped model (`base_model.embeddings.<table>`)."""
    embeddings = getattr(model.base_model, "embeddings", None)
    tables = {name: getattr(embeddings, name, None) for name in TABLES}
    if not isinstance(tables["word_embeddings"], torch.nn.Embedding):
        raise RecipeError(
            f"distill_init_embeddings: the {who} ({type(model).__name__}) has no BERT-shaped embeddings "
            "(base_model.embeddings.word_embeddings)"
        )
    return {name: table for name, table in tables.items() if isinstance(table, torch.nn.Embedding)}


@torch.no_grad()
def project_teacher_embeddings(student, teacher) -> dict:
    """Write the teacher's embedding tables, projected onto the student's width, into the student; returns what
    run_info.json records (the share of the word table's variance the projection keeps)."""
    student_tables, teacher_tables = embedding_tables(student, "student"), embedding_tables(teacher, "teacher")
    words = teacher_tables["word_embeddings"].weight.float()  # (V, H_teacher)
    target = student_tables["word_embeddings"].weight  # (V, H_student)
    if words.shape[0] != target.shape[0] or target.shape[1] > words.shape[1]:
        raise RecipeError(
            f"distill_init_embeddings: the student's word table is {tuple(target.shape)}, the teacher's "
            f"{tuple(words.shape)}; it needs the same vocabulary and a student no wider than the teacher"
        )
    width = target.shape[1]
    mean = words.mean(dim=0)
    _, singular, directions = torch.linalg.svd(words - mean, full_matrices=False)  # directions: (H_t, H_t), rows
    basis = directions[:width].T  # (H_teacher, H_student): the top `width` principal directions
    target.copy_((words - mean) @ basis)
    padding = student_tables["word_embeddings"].padding_idx
    if padding is not None:  # the pad row stays zero, as nn.Embedding(padding_idx=...) starts it
        target[padding].zero_()
    copied = ["word_embeddings"]
    for name in TABLES[1:]:
        if name in student_tables and name in teacher_tables:
            source, table = teacher_tables[name].weight.float(), student_tables[name].weight
            rows = min(source.shape[0], table.shape[0])
            table[:rows].copy_(source[:rows] @ basis)
            copied.append(name)
    kept = (singular[:width] ** 2).sum() / (singular**2).sum()
    return {"tables": copied, "width": width, "variance_kept": round(float(kept), 4)}
