"""The benchmark's bookkeeping (its speed numbers come from running it, not from tests)."""

from dataclasses import asdict

import pytest

from pipelines import benchmark


def test_each_lever_changes_exactly_one_thing():
    project = asdict(benchmark.PROJECT)
    names = set()
    for lever in benchmark.LEVERS:
        changed = {k for k, v in asdict(lever).items() if v != project[k] and k != "name"}
        # one lever, two fields: workers come with pinned memory; foreach replaces the fused kernel
        assert len(changed) == 1 or changed in (
            {"dataloader_num_workers", "dataloader_pin_memory"},
            {"optim", "adamw_foreach"},
        ), (lever.name, changed)
        names.add(lever.name)
    assert len(names) == len(benchmark.LEVERS)


def test_markdown_rows_ratios_against_reference_and_project():
    def row(setup, train, evaluation):
        return {
            "model": "m",
            "setup": setup,
            "train_samples_per_second": train,
            "train_real_tokens_per_second": 1.0,
            "mfu": 0.1,
            "peak_rss_gb": 1.0,
            "eval_samples_per_second": evaluation,
            "parameters": 10_350_000,
        }

    rows = benchmark.markdown_rows(
        [row("reference", 10, 50), row("project", 40, 200), row("project + x", 20, 100)], {"fp32": 1, "bf16": 2}
    )
    rows += benchmark.markdown_rows(
        [{"model": "m", "setup": "project - bf16", "not_timed": "bf16 not native here"}], {}
    )[2:]
    cells = [[c.strip() for c in r.strip("|").split("|")] for r in rows[2:]]
    assert cells[0][3:5] == ["1.00", "0.25"] and cells[0][9:11] == ["1.00", "0.25"]
    assert cells[1][3:5] == ["4.00", "1.00"] and cells[1][9:11] == ["4.00", "1.00"]
    assert cells[2][3:5] == ["2.00", "0.50"] and cells[2][9:11] == ["2.00", "0.50"]
    assert cells[0][-1] == "10.35"  # parameter counts beside the speeds (a student against its teacher)
    assert cells[3][2] == "bf16 not native here"  # an emulated lever is named, not timed as a 50x loss
    assert all(len(c) == len(cells[0]) for c in cells)


def test_training_flops_count_attention(tiny_bert_dir):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=3)
    short, long = benchmark.training_flops_per_token(model, 10), benchmark.training_flops_per_token(model, 110)
    config = model.config
    assert long - short == pytest.approx(12 * config.num_hidden_layers * config.hidden_size * 100)


def test_pretraining_flops_count_the_vocabulary_on_masked_tokens_and_the_generator():
    from pipelines.benchmark_pretraining import pretraining_flops_per_token
    from pipelines.models import ScratchTransformerForMaskedLM, ScratchTransformerForPreTraining, config_from_preset

    config = config_from_preset("tiny", vocab_size=1000)  # H 32, FFN 64, 2 layers
    per_layer = 4 * 32 * 32 + 2 * 32 * 64  # Q, K, V, output; the two feed-forward matrices
    vocabulary_share = 0.15 * (6 * 32 * 32 + 6 * 32 * 1000)  # MLM head's dense + tied decoder, on masked tokens only
    expected = 6 * 2 * per_layer + 12 * 2 * 32 * 128 + vocabulary_share
    assert pretraining_flops_per_token(ScratchTransformerForMaskedLM(config), 128, 0.15) == pytest.approx(expected)
    small, large = (
        ScratchTransformerForPreTraining(config_from_preset("tiny", vocab_size=1000, generator_size=size))
        for size in (0.5, 1.0)
    )
    # ELECTRA = the MLM count (its generator head replaces the MLM head) + the discriminator head + the generator.
    assert expected < pretraining_flops_per_token(small, 128, 0.15) < pretraining_flops_per_token(large, 128, 0.15)


def test_the_before_attention_is_put_back_only_inside_its_measurement():
    """The benchmark's "before" rows time torch's fused kernel in bf16 training; every other row, today's path."""
    import torch

    from pipelines.models.scratch_transformer import modeling_scratch_transformer as modeling

    query, key, value = (torch.randn(1, 2, 5, 4, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))

    def backward_node():
        return type(modeling.ATTENTION_FUNCTIONS["sdpa"](query, key, value, None, 0.0).grad_fn).__name__

    today = backward_node()
    with benchmark.scratch_kernels_before():
        before = backward_node()
    assert "ScaledDotProduct" in before and "ScaledDotProduct" not in today
    assert backward_node() == today  # restored on the way out


def test_pretraining_rows_compare_each_setup_with_the_recipe_before():
    from pipelines.benchmark_pretraining import PRETRAINING_SETUPS, pretraining_markdown_rows

    assert PRETRAINING_SETUPS[0].kernels_before and PRETRAINING_SETUPS[0].dropout is None
    results = [
        {
            "model": "m",
            "objective": objective,
            "setup": setup,
            "seconds_per_step": 1.0,
            "tokens_per_second": speed,
            "mfu": 0.1,
            "warmup_seconds": 2.0,
            "peak_memory_gb": 1.0,
            "precision": "bf16",
        }
        for objective, setup, speed in (("mlm", "before", 1000), ("mlm", "after", 1500), ("electra", "after", 500))
    ]
    cells = [[c.strip() for c in r.strip("|").split("|")] for r in pretraining_markdown_rows(results)[2:]]
    assert [c[5] for c in cells] == ["1.00", "1.50", "0.50"]


def test_scratch_vs_bert_times_both_models_of_one_shape_on_the_same_batches(data_dir):
    """scripts/benchmark_scratch_vs_bert.py's comparison, two steps of the smallest preset: both models have the same
    parameter count (the point of the comparison), each gets a rate, and the report has the preset's row."""
    from pipelines.benchmark_scratch_vs_bert import compare_presets, markdown_report

    results, mean_length = compare_presets(
        ["small-3l-4h"], str(data_dir), steps=1, warmup_steps=1, batch_size=2, max_length=32, precisions=["fp32"]
    )
    (row,) = results
    assert row["ours_params"] == row["bert_params"] > 10_000_000
    assert row["ours"] > 0 and row["bert"] > 0 and row["ratio"] > 0
    assert 0 < mean_length <= 32
    report = markdown_report("python scripts/benchmark_scratch_vs_bert.py", results, mean_length, 32, 2, 1, 1)
    assert f"| small-3l-4h | {row['ours_params']:,} | {row['bert_params']:,} | fp32 |" in report
