"""Self-attention relation distillation (MiniLMv2; Wang et al. 2021): the student's last attention layer learns the
teacher's query-query, key-key and value-value relations.

    distill_relations: 1.0        # the weight of this term, added to the distillation loss
    distill_relation_heads: 8     # relation heads: must divide the student's and the teacher's width

Distilling only the outputs leaves the student's layers to find their own way to the teacher's answers. TinyBERT's
ablation (Jiao et al. 2020) finds the layer-to-layer terms its largest part; MiniLMv2 distils the self-attention
relations of one layer, which needs no projection between the two widths: the queries of a layer (B, L, H) are cut
into R relation heads (B, R, L, H/R), and each head's relation is softmax(Q Q^T / sqrt(H/R)) over the keys, an
(L, L) distribution per token whatever H is. The loss is KL(teacher || student) of those rows, over the real tokens,
for Q, K and V, averaged.

The relations depend on the tokens, so the student and the teacher must share the tokenizer, and the teacher runs
beside the student at every training step (no cache: a batch's relations are B x R x L x L numbers per projection).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pipelines.arguments import RecipeError
from pipelines.distillation_teacher import MASKED

# The names of the query, key and value projections: ours (one fused Linear), BERT's and DistilBERT's.
FUSED = "qkv"
SEPARATE = (("query", "key", "value"), ("q_lin", "k_lin", "v_lin"))


def last_attention_projections(model: nn.Module) -> list[nn.Linear]:
    """The Linear layers that make the queries, keys and values of the model's last attention layer: [qkv] or
    [query, key, value] (modules are listed in the order the model registers them, layer by layer)."""
    names = {FUSED} | {name for group in SEPARATE for name in group}
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.rsplit(".", 1)[-1] in names]
    if found and found[-1][0].endswith(FUSED):
        return [found[-1][1]]
    last = tuple(name.rsplit(".", 1)[-1] for name, _ in found[-3:])
    if last not in SEPARATE:
        raise RecipeError(
            f"distill_relations: {type(model).__name__} has no attention projections named {FUSED} or "
            f"{' / '.join('/'.join(group) for group in SEPARATE)}; relation distillation cannot read its attention"
        )
    return [module for _, module in found[-3:]]


class ProjectionCapture:
    """Forward hooks on a model's last query/key/value projections: after a forward in training mode (or any forward,
    for a teacher), take() gives [Q, K, V], each (B, L, H)."""

    def __init__(self, model: nn.Module, always: bool = False):
        self.modules = last_attention_projections(model)
        self.width = self.modules[0].out_features // (3 if len(self.modules) == 1 else 1)
        self.always, self.outputs = always, {}
        self.handles = [module.register_forward_hook(self.keeper(i)) for i, module in enumerate(self.modules)]

    def keeper(self, index: int):
        def hook(module, args, output):
            if self.always or module.training:  # a student's evaluation batches keep nothing
                self.outputs[index] = output

        return hook

    def take(self) -> list[torch.Tensor]:
        outputs = [self.outputs.pop(index) for index in range(len(self.modules))]
        return list(outputs[0].chunk(3, dim=-1)) if len(outputs) == 1 else outputs  # fused: (B, L, 3H) = Q | K | V


def log_relations(states: torch.Tensor, keep: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, L, H) -> (B, R, L, L): per relation head, log softmax over the real keys of the scaled dot products."""
    batch, length, width = states.shape
    split = states.view(batch, length, heads, width // heads).transpose(1, 2)  # (B, R, L, H/R)
    scores = split @ split.transpose(-1, -2) / math.sqrt(width // heads)  # (B, R, L, L)
    return F.log_softmax(scores.masked_fill(~keep[:, None, None, :], MASKED), dim=-1)


def relation_loss(student: list[torch.Tensor], teacher: list[torch.Tensor], attention_mask, heads: int) -> torch.Tensor:
    """Mean over Q, K, V of KL(teacher relation || student relation), averaged over the real tokens and heads."""
    keep = attention_mask.bool()  # (B, L)
    rows = keep[:, None, :].float()  # (B, 1, L): the query positions that count
    losses = []
    for mine, theirs in zip(student, teacher):
        log_student = log_relations(mine.float(), keep, heads)
        log_teacher = log_relations(theirs.float(), keep, heads)
        kl = F.kl_div(log_student, log_teacher, log_target=True, reduction="none").sum(-1)  # (B, R, L)
        losses.append((kl * rows).sum() / (rows.sum() * heads))
    return torch.stack(losses).mean()


class RelationDistillation:
    """The teacher beside the student: hooks on both models' last attention projections; term() runs the teacher on
    the batch the student just saw and returns the weighted relation loss."""

    def __init__(self, student: nn.Module, teacher: nn.Module, weight: float, heads: int, input_names: list[str]):
        self.student, self.teacher = ProjectionCapture(student), ProjectionCapture(teacher, always=True)
        for side, capture in (("student", self.student), ("teacher", self.teacher)):
            if capture.width % heads:
                raise RecipeError(
                    f"distill_relation_heads is {heads}; it must divide the {side}'s attention width {capture.width}"
                )
        self.model, self.weight, self.heads, self.input_names = teacher.eval(), weight, heads, input_names

    def term(self, inputs: dict) -> torch.Tensor:
        with torch.no_grad():
            self.model(**{name: inputs[name] for name in self.input_names if name in inputs})
        teacher = self.teacher.take()
        return self.weight * relation_loss(self.student.take(), teacher, inputs["attention_mask"], self.heads)

    def describe(self) -> dict:
        widths = {"student_width": self.student.width, "teacher_width": self.teacher.width}
        return {"weight": self.weight, "heads": self.heads, **widths}
