"""LoRA: layers found per architecture, a few real Trainer steps, then save / load / merge giving the same logits."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

from pipelines.arguments import ModelArguments, RecipeError, TrackingArguments, parse_recipe
from pipelines.lora import (
    PeftArguments,
    apply_lora,
    find_attention_projections,
    find_task_head,
    load_adapter,
    merge_and_export,
    save_adapter,
    save_lora_run,
)

PAIRS = [
    ("A man plays a guitar.", "A man makes music.", 0),
    ("A dog sleeps on the sofa.", "The dog is running.", 2),
    ("She bought a car.", "The car is red.", 1),
    ("Two kids play football.", "Children are playing.", 0),
] * 4


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    return AutoTokenizer.from_pretrained(minilm_path)


@pytest.fixture(scope="module")
def scratch_base_dir(tmp_path_factory, tokenizer):
    """Our tiny ScratchTransformer saved as a checkpoint: what MLM pretraining would leave (random weights here)."""
    from pipelines.models import ScratchTransformerForMaskedLM, config_from_preset

    folder = tmp_path_factory.mktemp("scratch-base")
    config = config_from_preset("tiny", vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    ScratchTransformerForMaskedLM(config).save_pretrained(folder)
    return folder


def load_classifier(path):
    labels = ["entailment", "neutral", "contradiction"]
    return AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=3, id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)}
    )


def encoded_pairs(tokenizer):
    premises, hypotheses, labels = zip(*PAIRS)
    encoded = tokenizer(list(premises), list(hypotheses), truncation=True, max_length=32)
    return datasets.Dataset.from_dict({**encoded, "labels": list(labels)})


def logits_of(model, batch) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**batch).logits


def test_layers_found_per_architecture(tiny_bert_dir, scratch_base_dir):
    bert = load_classifier(tiny_bert_dir)
    assert find_attention_projections(bert) == [
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.output.dense",
    ]
    assert find_task_head(bert) == ["classifier", "pooler"]

    scratch = load_classifier(scratch_base_dir)
    assert find_attention_projections(scratch) == ["attention.qkv", "attention.out_proj"]
    assert find_task_head(scratch) == ["pooler", "classifier"]

    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    distilbert = DistilBertForSequenceClassification(
        DistilBertConfig(vocab_size=100, dim=16, n_layers=1, n_heads=2, hidden_dim=32)
    )
    assert find_attention_projections(distilbert) == [
        "attention.q_lin",
        "attention.k_lin",
        "attention.v_lin",
        "attention.out_lin",
    ]
    assert find_task_head(distilbert) == ["pre_classifier", "classifier"]


def test_random_weights_refused(tokenizer):
    from pipelines.models import ScratchTransformerForSequenceClassification, config_from_preset

    model = ScratchTransformerForSequenceClassification(
        config_from_preset("tiny", vocab_size=len(tokenizer), num_labels=3)
    )
    with pytest.raises(RecipeError, match="pretrained"):
        apply_lora(model, PeftArguments(use_lora=True), "SEQ_CLS")


def test_recipe_keys_parse(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "model_name_or_path: minilm\noutput_dir: out\nuse_lora: true\nlora_r: 4\nlora_target_modules: [query, value]\n"
    )
    _, peft_args, _, _, resolved = parse_recipe(
        (ModelArguments, PeftArguments, TrackingArguments, TrainingArguments), [str(recipe)]
    )
    assert peft_args.use_lora and peft_args.lora_r == 4 and peft_args.lora_target_modules == ["query", "value"]
    assert resolved["lora_r"] == 4


@pytest.mark.parametrize("architecture", ["bert", "scratch_transformer"])
def test_train_save_load_merge_round_trip(architecture, tmp_path, tokenizer, tiny_bert_dir, scratch_base_dir):
    base_dir = tiny_bert_dir if architecture == "bert" else scratch_base_dir
    torch.manual_seed(0)
    model = apply_lora(load_classifier(base_dir), PeftArguments(use_lora=True, lora_r=4, lora_alpha=8), "SEQ_CLS")
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name or "modules_to_save" in name for name in trainable)

    train = encoded_pairs(tokenizer)
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=3,
        per_device_train_batch_size=8,
        learning_rate=5e-2,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
    )
    Trainer(model=model, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tokenizer)).train()

    batch = tokenizer([p for p, _, _ in PAIRS[:4]], [h for _, h, _ in PAIRS[:4]], padding=True, return_tensors="pt")
    trained = logits_of(model, batch)
    untrained_base = logits_of(load_classifier(base_dir), batch)
    assert not torch.allclose(trained, untrained_base, atol=1e-3)  # the adapters and head did learn something

    adapter_dir = save_adapter(model, tmp_path / "adapter", tokenizer)
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in adapter_dir.iterdir()}
    reloaded = load_adapter(load_classifier(base_dir), adapter_dir)
    torch.testing.assert_close(logits_of(reloaded, batch), trained, atol=1e-5, rtol=0)

    merged = merge_and_export(reloaded, tmp_path / "merged", tokenizer)
    torch.testing.assert_close(logits_of(merged, batch), trained, atol=1e-5, rtol=0)
    exported = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged")  # plain transformers, no PEFT
    assert not any("lora_" in name for name, _ in exported.named_parameters())
    torch.testing.assert_close(logits_of(exported, batch), trained, atol=1e-5, rtol=0)
    if architecture == "scratch_transformer":
        assert (tmp_path / "merged" / "modeling_scratch_transformer.py").is_file()  # our code travels with the export


def test_save_lora_run_layout_card_and_upload(tmp_path, tokenizer, tiny_bert_dir):
    run = tmp_path / "run"
    model = apply_lora(load_classifier(tiny_bert_dir), PeftArguments(use_lora=True), "SEQ_CLS")
    run.mkdir()
    (run / "adapter_config.json").write_text("{}")  # as trainer.save_model() on a PEFT model would leave
    save_lora_run(model, run, tokenizer)
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    assert (run / "model.safetensors").is_file() and (run / "config.json").is_file()
    assert not (run / "adapter_config.json").exists()  # else from_pretrained(run folder) would apply it twice

    # What the MNLI task writes beside the model, then the card and the upload of a LoRA run.
    (run / "run_info.json").write_text(
        json.dumps(
            {
                "task": "mnli",
                "model": str(tiny_bert_dir),
                "pretrained": True,
                "parameters": {"total": 10, "trainable": 1},
            }
        )
    )
    (run / "all_results.json").write_text(json.dumps({"eval_matched_accuracy": 0.5, "eval_mismatched_accuracy": 0.25}))
    (run / "recipe.yaml").write_text("use_lora: true\n")
    from pipelines.hub_push import push_run

    staged = Path(push_run(run, "someone/tiny-lora", dry_run_dir=tmp_path / "upload"))
    assert not (staged / "adapter").exists() and (staged / "model.safetensors").is_file()
    card = (staged / "README.md").read_text()
    assert "Fine-tuned with LoRA (rank 8, alpha 16, dropout 0.1)" in card
    assert "`attention.self.query`" in card and "full: `classifier`, `pooler`." in card
    assert "- lora" in card
