"""ELECTRA pretraining (objective: electra): the replaced-token labels, the shared embeddings, dropout off while
pretraining, and a real run that is interrupted, resumes, records the gate metrics for every checkpoint, and whose
final folder and checkpoints fine-tune on MNLI and QA with the pretrained encoder."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, shared_data_dir, subprocess_env, write_tiny_mnli
from safetensors.torch import load_file
from transformers import AutoTokenizer

from pipelines.checkpoints import resolve_resume_checkpoint
from pipelines.models import ScratchTransformerForPreTraining, config_from_preset
from pipelines.tasks.electra import GATE_METRICS, make_electra_collator
from pipelines.tasks.mlm import set_dropout

SENTENCES = [
    "The generator fills the masked positions with plausible tokens.",
    "Short one.",
    "The discriminator learns from every token whether it was replaced by the generator or not.",
]


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    return AutoTokenizer.from_pretrained(minilm_path)


def tiny_electra(tokenizer, **overrides) -> ScratchTransformerForPreTraining:
    config = config_from_preset(
        "tiny",
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        norm_position="pre",
        generator_size=0.5,
        **overrides,
    )
    return ScratchTransformerForPreTraining(config)


def masked_batch(tokenizer, mlm_probability=0.5):
    examples = [tokenizer(text, return_special_tokens_mask=True) for text in SENTENCES]
    torch.manual_seed(0)
    return make_electra_collator(tokenizer, mlm_probability, whole_word_mask=False)(examples)


def test_collator_masks_with_mask_token_and_never_scores_special_tokens_or_padding(tokenizer):
    batch = masked_batch(tokenizer)
    masked = batch["labels"] != -100
    original = torch.where(masked, batch["labels"], batch["input_ids"])
    special = torch.isin(original, torch.tensor(tokenizer.all_special_ids))
    padding = batch["attention_mask"] == 0
    assert padding.any() and masked.any()  # the short sentence is padded; some tokens are masked
    assert (batch["input_ids"][masked] == tokenizer.mask_token_id).all()  # mask_replace_prob 1.0: [MASK] only
    assert not (masked & special).any()
    assert torch.equal(batch["scored_mask"], ~special & ~padding)


def test_replaced_labels_are_one_exactly_where_the_sampled_token_differs(tokenizer):
    batch = masked_batch(tokenizer)
    model = tiny_electra(tokenizer).eval()
    masked = batch["labels"] != -100
    # Make the generator sample one token almost surely: the token "the". Masked positions that held "the" are then
    # replaced by the same token and must count as original; all other masked positions as replaced.
    the = tokenizer.convert_tokens_to_ids("the")
    assert (batch["labels"][masked] == the).any() and (batch["labels"][masked] != the).any()
    with torch.no_grad():
        model.generator_head.bias[the] = 1e4
        output = model(**batch)
        corrupted, _, _ = model.replace_masked_tokens(batch["input_ids"], batch["labels"], None, None, None)
    assert (corrupted[masked] == the).all() and torch.equal(corrupted[~masked], batch["input_ids"][~masked])
    expected_replaced = (masked & (batch["labels"] != the)).sum()
    assert output.replaced_tokens.item() == expected_replaced.item()
    assert output.scored_tokens.item() == batch["scored_mask"].sum().item()
    assert output.masked_tokens.item() == masked.sum().item()
    assert 0 <= output.rtd_correct.item() <= output.scored_tokens.item()
    assert 0 <= output.replaced_detected.item() <= output.replaced_tokens.item()


def test_generator_and_discriminator_share_the_embeddings(tokenizer):
    model = tiny_electra(tokenizer, rtd_weight=0.0)  # loss = generator MLM loss alone
    vocabulary_tables = [name for name, p in model.named_parameters() if p.dim() == 2 and p.shape[0] == len(tokenizer)]
    assert vocabulary_tables == ["transformer.embeddings.word_embeddings.weight"]
    assert model.generator.embeddings_project.in_features == model.config.hidden_size
    assert model.generator.embeddings_project.out_features == model.config.hidden_size // 2  # generator_size 0.5
    model(**masked_batch(tokenizer)).loss.backward()
    embeddings = model.transformer.embeddings
    for table in (embeddings.word_embeddings, embeddings.position_embeddings, embeddings.token_type_embeddings):
        assert table.weight.grad is not None and table.weight.grad.abs().sum() > 0  # the generator's loss reaches them


def test_dropout_off_while_pretraining_but_saved_config_keeps_it(tmp_path, tokenizer):
    model = tiny_electra(tokenizer)
    set_dropout(model, 0.0)
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    assert all(m.dropout_prob == 0.0 for m in model.modules() if hasattr(m, "dropout_prob"))
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["hidden_dropout_prob"] == 0.1 and saved["attention_probs_dropout_prob"] == 0.1


REMOTE_CODE_SCRIPT = """
import sys
import torch
from transformers import AutoModelForPreTraining, AutoModelForSequenceClassification

class BlockPipelines:  # our package is installed (editable): take it off the import system
    def find_spec(self, name, path=None, target=None):
        if name == "pipelines" or name.startswith("pipelines."):
            raise ModuleNotFoundError(name)

sys.meta_path.insert(0, BlockPipelines())
folder = sys.argv[1]
classifier = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=3, trust_remote_code=True)
pretraining = AutoModelForPreTraining.from_pretrained(folder, trust_remote_code=True)
assert classifier.__module__.startswith("transformers_modules"), classifier.__module__
for name, weight in pretraining.transformer.state_dict().items():
    assert torch.equal(classifier.transformer.state_dict()[name], weight), name
print("loaded", type(pretraining).__name__)
"""


def test_saved_electra_folder_loads_with_trust_remote_code_without_our_package(tmp_path, tokenizer):
    folder = tmp_path / "electra"
    tiny_electra(tokenizer).save_pretrained(folder)
    script = tmp_path / "load_remote.py"
    script.write_text(REMOTE_CODE_SCRIPT)
    env = {key: value for key, value in subprocess_env().items() if key != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-I", str(script), str(folder)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "loaded ScratchTransformerForPreTraining" in result.stdout


# ---------------------------------------------------------------------------------------------------------------------
# A real run: interrupted, resumed, then fine-tuned


def pretraining_recipe(tmp_path: Path) -> Path:
    corpus = shared_data_dir() / "corpus" / "enwiki_sample.txt"
    if not corpus.is_file():
        pytest.skip(f"{corpus} not found (set PIPELINES_DATA_DIR to the folder described in shared/data/README.md)")
    text = tmp_path / "en_200.txt"
    with corpus.open(encoding="utf-8") as f:
        text.write_text("".join(next(f) for _ in range(200)), encoding="utf-8")
    recipe = tmp_path / "electra.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "objective": "electra",
                "scratch_preset": "tiny",
                "tokenizer_name": "minilm",
                "config_overrides": "norm_position=pre",
                "pretraining_dropout": 0.0,
                "train_files": [str(text)],
                "validation_split_percentage": 10,
                "max_seq_length": 64,
                "max_eval_samples": 16,
                "cache_dir": str(tmp_path / "cache"),
                "report_to": "none",
                "disable_tqdm": True,
                "max_steps": 30,
                "per_device_train_batch_size": 8,
                "learning_rate": 1e-3,
                "warmup_steps": 0.1,
                "lr_scheduler_type": "linear",
                "logging_steps": 1,
                "save_strategy": "steps",
                "save_steps": 10,
                "eval_strategy": "steps",
                "eval_steps": 10,
                "seed": 0,
            }
        )
    )
    return recipe


def launch(recipe: Path, output_dir: Path, *overrides: str) -> subprocess.Popen:
    script = REPO / "scripts" / "run_pretraining.py"
    cmd = [sys.executable, str(script), str(recipe), "--output_dir", str(output_dir), *overrides]
    return subprocess.Popen(
        cmd,
        cwd=recipe.parent,
        env=subprocess_env(TQDM_DISABLE="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def encoder_weights(folder: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(folder / "model.safetensors").items() if k.startswith("transformer.layers.")}


def assert_encoder_loaded(pretrained: dict[str, torch.Tensor], finetuned_folder: Path):
    """Two steps at lr 1e-5 move a weight by about 2e-5: the fine-tuned encoder is the pretrained one, not random."""
    finetuned = load_file(finetuned_folder / "model.safetensors")
    for name, weight in pretrained.items():
        assert torch.allclose(finetuned[name], weight, atol=1e-3), name


@pytest.mark.slow
def test_electra_run_resumes_records_its_gate_and_fine_tunes(tmp_path, data_dir, caplog):
    recipe = pretraining_recipe(tmp_path)
    output_dir = tmp_path / "pretrained"

    process = launch(recipe, output_dir)
    for line in process.stdout:
        if "'loss'" in line:
            process.send_signal(signal.SIGTERM)
            break
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    checkpoint = resolve_resume_checkpoint(type("Args", (), {"output_dir": str(output_dir)}), value="auto")
    assert checkpoint is not None and not (output_dir / "all_results.json").exists()

    # The same command resumed, in-process (one interpreter start less).
    from pipelines.tasks.mlm import main as run_pretraining

    with caplog.at_level(logging.INFO, logger="pipelines"):
        run_pretraining([str(recipe), "--output_dir", str(output_dir), "--resume_from_checkpoint", "auto"])
    assert f"Resuming from {checkpoint}" in caplog.text

    # The gate: every checkpoint's evaluation is in log_history, and all_results has the values before and after.
    history = json.loads((output_dir / "log_history.json").read_text())
    evaluations = {entry["step"]: entry for entry in history if "eval_rtd_accuracy" in entry}
    assert set(evaluations) == {10, 20, 30}
    results = json.loads((output_dir / "all_results.json").read_text())
    for name in GATE_METRICS:
        assert name in results and f"{name}_before" in results
    assert results["eval_rtd_accuracy"] > results["eval_rtd_accuracy_before"]
    assert results["eval_replaced_fraction"] == pytest.approx(results["eval_replaced_fraction_before"], abs=0.1)
    state = json.loads((output_dir / "checkpoint-20" / "trainer_state.json").read_text())
    assert [e["step"] for e in state["log_history"] if "eval_generator_loss" in e] == [10, 20]
    # One-cycle: the learning rate ended at zero, and the saved config has the model's dropout back.
    assert [e["learning_rate"] for e in history if "learning_rate" in e][-1] < 1e-4
    assert json.loads((output_dir / "config.json").read_text())["hidden_dropout_prob"] == 0.1

    from pipelines.tasks import mnli, qa

    mnli_data = write_tiny_mnli(tmp_path / "mnli", data_dir, n_train=16, n_dev=4)
    squad = REPO / "tests" / "fixtures" / "qa" / "tiny_squad.json"
    fine_tuning = [
        "--max_steps",
        "2",
        "--per_device_train_batch_size",
        "4",
        "--learning_rate",
        "1e-5",
        "--report_to",
        "none",
        "--max_seq_length",
        "64",
        "--seed",
        "0",
    ]
    for folder in (output_dir, output_dir / "checkpoint-20"):
        pretrained = encoder_weights(folder)
        assert pretrained
        out = tmp_path / f"mnli-{folder.name}"
        mnli.main(
            ["--model_name_or_path", str(folder), "--data_dir", str(mnli_data), "--output_dir", str(out), *fine_tuning]
        )
        assert_encoder_loaded(pretrained, out)
        out = tmp_path / f"qa-{folder.name}"
        qa.main(
            [
                "--model_name_or_path",
                str(folder),
                "--train_file",
                str(squad),
                "--validation_file",
                str(squad),
                "--doc_stride",
                "16",
                "--max_query_length",
                "16",
                "--output_dir",
                str(out),
                *fine_tuning,
            ]
        )
        assert_encoder_loaded(pretrained, out)
