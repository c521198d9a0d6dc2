"""Tests of our scratch Transformer encoder (pipelines/models/scratch_transformer), transformers-tester style.

Everything runs on the "tiny" preset (2 layers, hidden 32) on CPU; the whole file takes seconds.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
)

from pipelines.models import (
    PRESETS,
    ScratchTransformerConfig,
    ScratchTransformerForMaskedLM,
    ScratchTransformerForQuestionAnswering,
    ScratchTransformerForSequenceClassification,
    ScratchTransformerModel,
    config_from_preset,
    count_parameters,
)

ALL_MODEL_CLASSES = (
    ScratchTransformerModel,
    ScratchTransformerForSequenceClassification,
    ScratchTransformerForQuestionAnswering,
    ScratchTransformerForMaskedLM,
)
NORM_POSITIONS = ("post", "pre")


class ScratchTransformerModelTester:
    """Builds a tiny config and a padded batch: row 0 has 3 padding positions at the end."""

    batch_size = 3
    seq_length = 9

    def __init__(self, norm_position="post", attn_implementation="sdpa", num_labels=3, **overrides):
        self.num_labels = num_labels
        self.config = config_from_preset(
            "tiny",
            num_labels=num_labels,
            norm_position=norm_position,
            attn_implementation=attn_implementation,
            **overrides,
        )

    def prepare_inputs(self, seed=0):
        generator = torch.Generator().manual_seed(seed)
        vocab = self.config.vocab_size
        input_ids = torch.randint(1, vocab, (self.batch_size, self.seq_length), generator=generator)
        attention_mask = torch.ones_like(input_ids)
        input_ids[0, -3:] = self.config.pad_token_id
        attention_mask[0, -3:] = 0
        token_type_ids = torch.zeros_like(input_ids)
        token_type_ids[:, self.seq_length // 2 :] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}

    def prepare_labels(self, model_class, seed=0):
        generator = torch.Generator().manual_seed(seed)
        if model_class is ScratchTransformerForSequenceClassification:
            return {"labels": torch.randint(0, self.num_labels, (self.batch_size,), generator=generator)}
        if model_class is ScratchTransformerForQuestionAnswering:
            return {
                "start_positions": torch.tensor([0, 2, 100]),  # 100: outside the window, clamped and ignored
                "end_positions": torch.tensor([1, 4, 100]),
            }
        if model_class is ScratchTransformerForMaskedLM:
            labels = torch.full((self.batch_size, self.seq_length), -100)
            labels[:, 1:3] = torch.randint(1, self.config.vocab_size, (self.batch_size, 2), generator=generator)
            return {"labels": labels}
        return {}

    def build(self, model_class, seed=0):
        torch.manual_seed(seed)
        return model_class(self.config).eval()


def main_output(output):
    """The tensor each head is judged by."""
    for name in ("logits", "start_logits", "last_hidden_state"):
        if name in output:
            return output[name]
    raise KeyError(list(output.keys()))


# ---------------------------------------------------------------- configuration and presets


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"hidden_size": 30, "num_attention_heads": 4}, "divisible"),
        ({"norm_position": "sandwich"}, "norm_position"),
        ({"num_hidden_layers": 0}, "num_hidden_layers"),
        ({"vocab_size": -5}, "vocab_size"),
        ({"hidden_dropout_prob": 1.5}, "hidden_dropout_prob"),
        ({"hidden_act": "no-such-activation"}, "hidden_act"),
        ({"attn_implementation": "flash_attention_2"}, "attn_implementation"),
    ],
)
def test_config_validation_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        ScratchTransformerConfig(**{**config_from_preset("tiny").to_dict(), **overrides})


def test_unknown_preset_lists_known_presets():
    with pytest.raises(ValueError, match="Unknown scratch_transformer preset 'huge'.*small-3l-4h.*tiny"):
        config_from_preset("huge")


def test_preset_overrides():
    config = config_from_preset("small-6l-8h", vocab_size=30522, num_labels=3, norm_position="pre")
    assert (config.hidden_size, config.num_attention_heads, config.num_hidden_layers) == (256, 8, 6)
    assert (config.vocab_size, config.num_labels, config.norm_position) == (30522, 3, "pre")
    assert config.layer_norm_eps == 1e-3


def test_count_parameters_counts_tied_weights_once():
    config = config_from_preset("tiny")
    encoder = count_parameters(ScratchTransformerModel(config))
    mlm = count_parameters(ScratchTransformerForMaskedLM(config))
    h, v = config.hidden_size, config.vocab_size
    assert encoder.embedding == (v + config.max_position_embeddings + config.type_vocab_size) * h
    assert encoder.total == encoder.embedding + encoder.non_embedding
    # MLM head adds dense (h*h + h), LayerNorm (2h) and the decoder bias (v), but no second v*h matrix.
    assert mlm.total == encoder.total + h * h + h + 2 * h + v


# ---------------------------------------------------------------- shapes, losses, outputs


@pytest.mark.parametrize("norm_position", NORM_POSITIONS)
@pytest.mark.parametrize("model_class", ALL_MODEL_CLASSES)
def test_output_shapes_and_losses(model_class, norm_position):
    tester = ScratchTransformerModelTester(norm_position)
    model = tester.build(model_class)
    inputs = tester.prepare_inputs()
    labels = tester.prepare_labels(model_class)
    output = model(**inputs, **labels)

    batch, seq, config = tester.batch_size, tester.seq_length, tester.config
    expected_shapes = {
        ScratchTransformerModel: {"last_hidden_state": (batch, seq, config.hidden_size)},
        ScratchTransformerForSequenceClassification: {"logits": (batch, tester.num_labels)},
        ScratchTransformerForQuestionAnswering: {"start_logits": (batch, seq), "end_logits": (batch, seq)},
        # With labels, the MLM head scores only the masked positions.
        ScratchTransformerForMaskedLM: {"logits": (int((labels["labels"] != -100).sum()), config.vocab_size)}
        if "labels" in labels
        else {"logits": (batch, seq, config.vocab_size)},
    }[model_class]
    for name, shape in expected_shapes.items():
        assert tuple(output[name].shape) == shape
    if labels:
        assert output.loss is not None and torch.isfinite(output.loss)
        output.loss.backward()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_regression_uses_mse_loss():
    tester = ScratchTransformerModelTester(num_labels=1)
    model = tester.build(ScratchTransformerForSequenceClassification)
    targets = torch.tensor([0.5, -1.0, 2.0])
    output = model(**tester.prepare_inputs(), labels=targets)
    assert torch.allclose(output.loss, torch.nn.functional.mse_loss(output.logits.squeeze(-1), targets))


def test_hidden_states_and_tuple_output():
    tester = ScratchTransformerModelTester("pre")
    model = tester.build(ScratchTransformerModel)
    inputs = tester.prepare_inputs()
    output = model(**inputs, output_hidden_states=True)
    assert len(output.hidden_states) == tester.config.num_hidden_layers + 1
    assert torch.equal(output.hidden_states[-1], output.last_hidden_state)  # after the final pre-LN norm
    as_tuple = model(**inputs, return_dict=False)
    assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[0], output.last_hidden_state)


# ---------------------------------------------------------------- numerics


@pytest.mark.parametrize("norm_position", NORM_POSITIONS)
@pytest.mark.parametrize("model_class", ALL_MODEL_CLASSES)
def test_eager_matches_sdpa(model_class, norm_position):
    tester = ScratchTransformerModelTester(norm_position)
    model = tester.build(model_class)
    inputs = tester.prepare_inputs()
    with torch.no_grad():
        sdpa_output = main_output(model(**inputs))
        model.set_attn_implementation("eager")
        assert model.config._attn_implementation == "eager"
        eager_output = main_output(model(**inputs))
    torch.testing.assert_close(eager_output, sdpa_output, atol=1e-5, rtol=1e-5)


def test_the_bf16_masked_lm_loss_matches_fp32_cross_entropy():
    """masked_lm_loss skips the (M, V) fp32 copy of bf16 logits; loss and gradients stay fp32 cross-entropy's."""
    from pipelines.models.scratch_transformer.modeling_scratch_transformer import masked_lm_loss

    generator = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(50, 1000, generator=generator)).bfloat16()
    targets = torch.randint(0, 1000, (50,), generator=generator)
    bf16_logits = logits.clone().requires_grad_()
    fp32_logits = logits.float().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as in training: the loss must not be cast back up
        loss = masked_lm_loss(bf16_logits, targets)
    expected = torch.nn.functional.cross_entropy(fp32_logits, targets)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, expected, atol=2e-3, rtol=1e-3)
    loss.backward()
    expected.backward()
    assert bf16_logits.grad.dtype == torch.bfloat16
    torch.testing.assert_close(bf16_logits.grad.float(), fp32_logits.grad, atol=1e-4, rtol=2e-2)
    total = masked_lm_loss(logits, targets, reduction="sum")
    torch.testing.assert_close(total, expected.detach() * 50, atol=0.1, rtol=1e-3)


def test_bf16_training_on_cpu_takes_the_explicit_attention_and_inference_the_fused_kernel():
    """The sdpa implementation trains in bf16 on a CPU with the explicit ops (torch's fused backward is slow
    there, BENCHMARKS.md) and gives the same gradients as the fp32 kernel, to bf16 precision."""
    from pipelines.models.scratch_transformer.modeling_scratch_transformer import sdpa_attention

    generator = torch.Generator().manual_seed(0)
    query, key, value = (torch.randn(2, 4, 9, 8, generator=generator) for _ in range(3))
    keep_mask = torch.ones(2, 1, 1, 9, dtype=torch.bool)
    keep_mask[0, ..., -3:] = False

    def attention_and_grads(dtype):
        inputs = [t.to(dtype).requires_grad_() for t in (query, key, value)]
        output = sdpa_attention(*inputs, keep_mask, 0.0)
        output.float().square().sum().backward()
        return output, [t.grad.float() for t in inputs]

    bf16_output, bf16_grads = attention_and_grads(torch.bfloat16)
    fp32_output, fp32_grads = attention_and_grads(torch.float32)
    assert "ScaledDotProduct" not in type(bf16_output.grad_fn).__name__  # the explicit ops: softmax(..) @ value
    assert "ScaledDotProduct" in type(fp32_output.grad_fn).__name__  # fp32 keeps the fused kernel
    torch.testing.assert_close(bf16_output.float(), fp32_output, atol=3e-2, rtol=3e-2)
    for bf16_grad, fp32_grad in zip(bf16_grads, fp32_grads):
        torch.testing.assert_close(bf16_grad, fp32_grad, atol=1e-1, rtol=5e-2)
    with torch.no_grad():  # inference in bf16: the fused kernel, same numbers to bf16 precision
        inference = sdpa_attention(query.bfloat16(), key.bfloat16(), value.bfloat16(), keep_mask, 0.0)
    torch.testing.assert_close(inference.float(), fp32_output.detach(), atol=3e-2, rtol=3e-2)


@pytest.mark.parametrize("attn_implementation", ("sdpa", "eager"))
@pytest.mark.parametrize("norm_position", NORM_POSITIONS)
def test_padding_does_not_change_real_positions(norm_position, attn_implementation):
    tester = ScratchTransformerModelTester(norm_position, attn_implementation)
    model = tester.build(ScratchTransformerModel)
    inputs = tester.prepare_inputs()
    pad = tester.config.pad_token_id
    extra = 5
    padded = {
        "input_ids": torch.nn.functional.pad(inputs["input_ids"], (0, extra), value=pad),
        "attention_mask": torch.nn.functional.pad(inputs["attention_mask"], (0, extra), value=0),
        "token_type_ids": torch.nn.functional.pad(inputs["token_type_ids"], (0, extra), value=0),
    }
    with torch.no_grad():
        reference = model(**inputs).last_hidden_state
        with_padding = model(**padded).last_hidden_state
    real = inputs["attention_mask"].bool()
    torch.testing.assert_close(with_padding[:, : tester.seq_length][real], reference[real], atol=1e-5, rtol=1e-5)


def test_unpadded_batch_without_mask_equals_all_ones_mask():
    tester = ScratchTransformerModelTester()
    model = tester.build(ScratchTransformerModel)
    input_ids = tester.prepare_inputs()["input_ids"][1:]  # rows without padding
    with torch.no_grad():
        torch.testing.assert_close(
            model(input_ids).last_hidden_state,
            model(input_ids, attention_mask=torch.ones_like(input_ids)).last_hidden_state,
        )


def test_bf16_autocast_forward_and_backward():
    tester = ScratchTransformerModelTester()
    model = tester.build(ScratchTransformerForSequenceClassification).train()
    labels = tester.prepare_labels(ScratchTransformerForSequenceClassification)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(**tester.prepare_inputs(), **labels)
    assert output.logits.dtype == torch.bfloat16
    assert torch.isfinite(output.loss)
    output.loss.backward()


def test_torch_compile_captures_one_graph():
    """`fullgraph=True` fails on any graph break; the cheap aot_eager backend keeps this fast.
    (The default inductor backend also compiles on CPU but takes ~20 s, so it is checked by hand.)"""
    tester = ScratchTransformerModelTester()
    model = tester.build(ScratchTransformerForSequenceClassification)
    inputs = tester.prepare_inputs()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(**inputs).logits, model(**inputs).logits)


@pytest.mark.parametrize("norm_position", NORM_POSITIONS)
def test_gradient_checkpointing_gives_same_gradients(norm_position):
    tester = ScratchTransformerModelTester(norm_position, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = tester.build(ScratchTransformerForSequenceClassification).train()
    inputs = tester.prepare_inputs()
    labels = tester.prepare_labels(ScratchTransformerForSequenceClassification)

    def gradients():
        model.zero_grad()
        model(**inputs, **labels).loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters()}

    plain = gradients()
    # transformers 5.23 name; `gradient_checkpointing_enable` is its deprecated alias.
    model.activation_checkpointing_enable()
    assert all(layer.gradient_checkpointing for layer in model.transformer.layers)
    checkpointed = gradients()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], msg=name)


# ---------------------------------------------------------------- weight tying, saving, loading


def test_mlm_decoder_is_the_word_embedding():
    tester = ScratchTransformerModelTester()
    model = tester.build(ScratchTransformerForMaskedLM)
    embedding = model.get_input_embeddings().weight
    assert model.get_output_embeddings().weight is embedding
    assert model.lm_head.decoder.weight.data_ptr() == embedding.data_ptr()
    # Still tied after resizing the vocabulary (e.g. after adding special tokens).
    new_vocab_size = tester.config.vocab_size + 8
    model.resize_token_embeddings(new_vocab_size, mean_resizing=False)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert model.lm_head.decoder.bias.shape[0] == new_vocab_size == model.config.vocab_size


@pytest.mark.parametrize("model_class", ALL_MODEL_CLASSES)
def test_save_and_load_round_trip(model_class, tmp_path):
    tester = ScratchTransformerModelTester("pre")
    model = tester.build(model_class)
    inputs = tester.prepare_inputs()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = model_class.from_pretrained(tmp_path).eval()
    assert loaded.config.norm_position == "pre"
    with torch.no_grad():
        torch.testing.assert_close(main_output(loaded(**inputs)), main_output(model(**inputs)), rtol=0, atol=0)
    if model_class is ScratchTransformerForMaskedLM:
        assert loaded.lm_head.decoder.weight is loaded.transformer.embeddings.word_embeddings.weight


def test_auto_classes_dispatch_from_config_and_checkpoint(tmp_path):
    config = AutoConfig.for_model("scratch_transformer", **PRESETS["tiny"])
    assert isinstance(config, ScratchTransformerConfig)
    auto_to_class = {
        AutoModel: ScratchTransformerModel,
        AutoModelForSequenceClassification: ScratchTransformerForSequenceClassification,
        AutoModelForQuestionAnswering: ScratchTransformerForQuestionAnswering,
        AutoModelForMaskedLM: ScratchTransformerForMaskedLM,
    }
    for auto_class, model_class in auto_to_class.items():
        assert type(auto_class.from_config(config)) is model_class
    # An MLM-pretrained checkpoint reloads as a classifier through the Auto class (our local code).
    ScratchTransformerForMaskedLM(config).save_pretrained(tmp_path)
    classifier = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=3)
    assert type(classifier) is ScratchTransformerForSequenceClassification
    assert AutoConfig.from_pretrained(tmp_path).model_type == "scratch_transformer"


REMOTE_CODE_SCRIPT = textwrap.dedent(
    """
    import sys

    class BlockPipelines:
        # Our package is installed (editable), so take it off the import system explicitly.
        def find_spec(self, name, path=None, target=None):
            if name == "pipelines" or name.startswith("pipelines."):
                raise ModuleNotFoundError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, BlockPipelines())
    try:
        import pipelines
        raise SystemExit("pipelines is importable: the test would prove nothing")
    except ModuleNotFoundError:
        pass

    import torch
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

    checkpoint, inputs_path, logits_path = sys.argv[1:4]
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint, trust_remote_code=True).eval()
    assert model.__module__.startswith("transformers_modules"), model.__module__
    with torch.no_grad():
        logits = model(**torch.load(inputs_path)).logits
    torch.save(logits, logits_path)
    # auto_map lists every head, not only the saved one.
    mlm = AutoModelForMaskedLM.from_pretrained(checkpoint, trust_remote_code=True)
    assert mlm.lm_head.decoder.weight is mlm.get_input_embeddings().weight
    """
)


def test_trust_remote_code_loads_without_our_package(tmp_path):
    tester = ScratchTransformerModelTester("pre")
    model = tester.build(ScratchTransformerForSequenceClassification)
    inputs = tester.prepare_inputs()
    checkpoint = tmp_path / "checkpoint"
    model.save_pretrained(checkpoint)
    saved_files = set(os.listdir(checkpoint))
    assert {"configuration_scratch_transformer.py", "modeling_scratch_transformer.py"} <= saved_files
    auto_map = json.loads((checkpoint / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForSequenceClassification"].startswith("modeling_scratch_transformer.")

    torch.save(inputs, tmp_path / "inputs.pt")
    script = tmp_path / "load_remote.py"
    script.write_text(REMOTE_CODE_SCRIPT)
    work_dir = tmp_path / "cwd"
    work_dir.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-I", str(script), str(checkpoint), str(tmp_path / "inputs.pt"), str(tmp_path / "out.pt")],
        cwd=work_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with torch.no_grad():
        expected = model(**inputs).logits
    torch.testing.assert_close(torch.load(tmp_path / "out.pt"), expected, rtol=0, atol=0)


# ---------------------------------------------------------------- Trainer


def test_a_few_trainer_steps(tmp_path):
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    tester = ScratchTransformerModelTester()
    model = tester.build(ScratchTransformerForSequenceClassification).train()
    generator = torch.Generator().manual_seed(0)
    num_examples = 16
    dataset = Dataset.from_dict(
        {
            "input_ids": torch.randint(1, tester.config.vocab_size, (num_examples, 12), generator=generator).tolist(),
            "attention_mask": [[1] * 12] * num_examples,
            "token_type_ids": [[0] * 6 + [1] * 6] * num_examples,
            "labels": torch.randint(0, 3, (num_examples,), generator=generator).tolist(),
        }
    )
    args = TrainingArguments(
        output_dir=str(tmp_path),
        use_cpu=True,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        activation_checkpointing=True,  # 5.23 name of `gradient_checkpointing`
        max_steps=2,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=dataset)
    assert trainer.model_accepts_loss_kwargs is False  # the Trainer averages over accumulation steps itself
    result = trainer.train()
    assert result.global_step == 2
    assert all(layer.gradient_checkpointing for layer in model.transformer.layers)
    assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in trainer.state.log_history if "loss" in entry)


def test_masked_lm_loss_on_masked_positions_equals_full_cross_entropy():
    """Scoring only masked positions is an optimisation: the loss equals cross-entropy over full logits."""
    tester = ScratchTransformerModelTester()
    model = tester.build(ScratchTransformerForMaskedLM).eval()
    inputs = tester.prepare_inputs()
    labels = tester.prepare_labels(ScratchTransformerForMaskedLM)["labels"]
    with torch.no_grad():
        full_logits = model(**inputs).logits  # (B, S, V) without labels
        loss = model(**inputs, labels=labels).loss
    expected = torch.nn.functional.cross_entropy(
        full_logits.view(-1, full_logits.shape[-1]), labels.view(-1), ignore_index=-100
    )
    assert torch.allclose(loss, expected, atol=1e-5)


def test_qk_layer_norm_bounds_the_attention_scores_and_saves_with_the_config(tmp_path):
    """qk_layer_norm: queries and keys of unit scale per head, whatever the projection's scale, so scaling the
    Q/K/V projection 100x (what a run at too high a rate drifts towards) cannot make one key take all attention."""
    config = config_from_preset("tiny", vocab_size=100, norm_position="pre", qk_layer_norm=True)
    model = ScratchTransformerModel(config).eval()
    attention = model.layers[0].attention
    hidden = torch.randn(2, 16, config.hidden_size)
    with torch.no_grad():
        attention.qkv.weight.mul_(100.0)
        query, key, _ = attention.project(hidden)
    assert query.shape == (2, config.num_attention_heads, 16, config.hidden_size // config.num_attention_heads)
    torch.testing.assert_close(query.pow(2).mean(-1), torch.ones(query.shape[:-1]), atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(key.pow(2).mean(-1), torch.ones(key.shape[:-1]), atol=1e-3, rtol=1e-3)
    model.save_pretrained(tmp_path)
    reloaded = ScratchTransformerModel.from_pretrained(tmp_path)
    assert reloaded.config.qk_layer_norm and reloaded.layers[0].attention.query_norm is not None
    assert ScratchTransformerModel(config_from_preset("tiny", vocab_size=100)).layers[0].attention.query_norm is None
