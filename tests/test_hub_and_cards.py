"""Publishing runs: the staged upload folder, the model card's metadata, the secret scan, pickle refusal, a push
with no network, and a pushed-layout ScratchTransformer checkpoint loading where `pipelines` is not importable.

One real tiny MNLI run (our ScratchTransformer `tiny` preset, a few steps, W&B offline) is made once per session;
tests that need variants (a pretrained run, a QA run) copy it and edit its files.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, subprocess_env
from filelock import FileLock
from huggingface_hub import ModelCard

from pipelines.hub_push import (
    PushError,
    UploadCheckError,
    check_upload_folder,
    push_after_run,
    push_run,
    take_over_trainer_push,
)
from pipelines.model_card import build_model_card

# Every test here works on real (tiny) runs: end-to-end, so marked slow like the other launched-run tests.
pytestmark = pytest.mark.slow

FAKE_HF_TOKEN = "hf_" + "Fake0Token1For2Tests3Only4abcdefgh"
PAIRS = [("A man is playing a guitar.", "A man is making music."), ("A dog sleeps.", "The dog runs in the park.")]
EXPECTED_UPLOAD = {
    "README.md",
    "training_curve.png",
    "config.json",
    "model.safetensors",
    "configuration_scratch_transformer.py",
    "modeling_scratch_transformer.py",
    "tokenizer.json",
    "tokenizer_config.json",
    "all_results.json",
    "run_info.json",
    "recipe.yaml",
}


def make_run(tmp_path_factory, name: str, script: str, recipe: dict, main=None) -> Path:
    """A real run of scripts/<script> with the given recipe, made once per session and name; with `main` (the
    script's task main), the same run in-process, one interpreter start less.

    The run lives under pytest's session temp root, so other test modules asking for the same name reuse it (under
    pytest-xdist, other workers too: the lock makes one make it while the others wait).
    """
    root = shared_runs(tmp_path_factory) / name
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(root / ".lock"):
        return run_once(root, script, recipe, main)


def shared_runs(tmp_path_factory) -> Path:
    """shared-runs/ in pytest's session temp root; under pytest-xdist, in the root above every worker's."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared-runs"


def run_once(root: Path, script: str, recipe: dict, main=None) -> Path:
    output_dir = root / "run"
    if (output_dir / "all_results.json").is_file():
        return output_dir
    recipe_path = root / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump({"output_dir": str(output_dir), **recipe}))
    if main is not None:
        main([str(recipe_path)])
        return output_dir
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / script), str(recipe_path)],
        cwd=root,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return output_dir


def make_mnli_run(tmp_path_factory, data_dir: Path) -> Path:
    """Our ScratchTransformer (`tiny` preset) trained 4 steps on 32 MNLI pairs, evaluated on 32 per split,
    W&B offline."""
    small = shared_runs(tmp_path_factory) / "mnli-data"
    small.mkdir(parents=True, exist_ok=True)
    for split in ("train", "validation_matched", "validation_mismatched"):
        if not (small / f"{split}.jsonl").is_file():  # written whole by os.replace: another worker may read it
            lines = (data_dir / "mnli" / f"{split}.jsonl").read_text().splitlines()[:32]
            (small / f"{split}.{os.getpid()}.tmp").write_text("\n".join(lines) + "\n")
            os.replace(small / f"{split}.{os.getpid()}.tmp", small / f"{split}.jsonl")
    return make_run(
        tmp_path_factory,
        "mnli-scratch-tiny",
        "run_mnli.py",
        {
            "scratch_preset": "tiny",
            "tokenizer_name": "minilm",
            "data_dir": str(small),
            "max_seq_length": 64,
            "max_steps": 4,
            "per_device_train_batch_size": 8,
            "per_device_eval_batch_size": 16,
            "learning_rate": 1e-3,
            "logging_steps": 1,
            "seed": 7,
            "report_to": "wandb",
            "wandb_project": "pipelines-tests",
        },
    )


def make_qa_run(tmp_path_factory, tiny_bert_dir: Path) -> Path:
    """A tiny BERT trained 4 steps on the QA fixture (5 SQuAD-format questions) and evaluated on it, no W&B.

    fp32 on every machine: predict.py runs in fp32, and a tiny model's span scores are near ties, so a bf16
    evaluation (what `precision: auto` picks on AVX-512 BF16 CPUs) can pick another span than predict.py does."""
    from pipelines.tasks import qa

    fixture = str(REPO / "tests" / "fixtures" / "qa" / "tiny_squad.json")
    return make_run(
        tmp_path_factory,
        "qa-bert-tiny",
        "run_qa.py",
        {
            "model_name_or_path": str(tiny_bert_dir),
            "train_file": fixture,
            "validation_file": fixture,
            "max_seq_length": 64,
            "doc_stride": 16,
            "max_query_length": 16,
            "max_steps": 4,
            "per_device_train_batch_size": 4,
            "learning_rate": 1e-3,
            "logging_steps": 1,
            "report_to": "none",
            "precision": "fp32",
        },
        main=qa.main,  # no W&B: nothing a separate process would keep apart
    )


@pytest.fixture(scope="session")
def scratch_run(tmp_path_factory, data_dir) -> Path:
    return make_mnli_run(tmp_path_factory, data_dir)


@pytest.fixture(scope="session")
def qa_run(tmp_path_factory, tiny_bert_dir) -> Path:
    return make_qa_run(tmp_path_factory, tiny_bert_dir)


def folder_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def copy_run(run: Path, destination: Path) -> Path:
    shutil.copytree(run, destination, ignore=shutil.ignore_patterns("wandb"))
    return destination


def edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}, indent=2))


# --- Dry run and card -----------------------------------------------------------------------------------------


def test_dry_run_folder_and_card_metadata(scratch_run, tmp_path):
    before = folder_hash(scratch_run)
    staged = Path(push_run(scratch_run, "someone/tiny-scratch-mnli", dry_run_dir=tmp_path / "upload"))
    assert folder_hash(scratch_run) == before  # the run folder is only read

    assert {p.name for p in staged.iterdir()} == EXPECTED_UPLOAD
    assert not any(p.is_dir() for p in staged.iterdir())  # no checkpoint-*, no wandb/
    for source_name in ("model.safetensors", "config.json", "all_results.json"):
        assert (staged / source_name).read_bytes() == (scratch_run / source_name).read_bytes()

    card = ModelCard.load(staged / "README.md")
    results = json.loads((scratch_run / "all_results.json").read_text())
    by_split = {r.dataset_split: r for r in card.data.eval_results}
    assert set(by_split) == {"validation_matched", "validation_mismatched"}  # two results
    assert by_split["validation_matched"].metric_type == "accuracy"
    assert by_split["validation_matched"].metric_value == results["eval_matched_accuracy"]
    assert by_split["validation_mismatched"].metric_value == results["eval_mismatched_accuracy"]
    assert by_split["validation_matched"].dataset_type == "nyu-mll/glue"
    data = card.data.to_dict()
    assert data["license"] == "apache-2.0" and data["library_name"] == "transformers"
    assert (
        data["pipeline_tag"] == "text-classification"
        and data["datasets"] == ["nyu-mll/glue"]
        and data["language"] == ["en"]
    )
    assert "base_model" not in data  # trained from scratch
    assert {"custom_code", "trained-from-scratch"} <= set(data["tags"])

    text = card.text
    assert "trained **from scratch**" in text.lower() or "Trained **from scratch**" in text
    assert "trust_remote_code=True" in text and "training_curve.png" in text
    assert "wandb sync wandb/offline-run-" in text  # offline W&B run: how to upload it
    assert f"{100 * results['eval_matched_accuracy']:.2f}%" in text
    precision = json.loads((scratch_run / "run_info.json").read_text())["precision"]  # pipelines/precision.py
    assert (
        f"CPU capability {precision['hardware']['cpu_capability']}; precision {precision['precision']} (auto: " in text
    )
    for section in (
        "## Results",
        "## Model",
        "## Training procedure",
        "**Hardware:**",
        "**Wall time:**",
        "## How to use",
        "## Intended use",
        "## Limitations",
        "## Licence",
    ):
        assert section in text, section


def test_card_of_pretrained_run_with_baseline(scratch_run, tmp_path):
    run = copy_run(scratch_run, tmp_path / "pretrained")
    edit_json(run / "run_info.json", model="minilm", pretrained=True)
    edit_json(run / "all_results.json", eval_matched_accuracy=0.75, eval_mismatched_accuracy=0.5)
    baseline = copy_run(scratch_run, tmp_path / "baseline")
    edit_json(baseline / "all_results.json", eval_matched_accuracy=0.5, eval_mismatched_accuracy=0.5)

    card = build_model_card(run, repo_id="someone/minilm-mnli", baseline_run=baseline, image_dir=tmp_path)
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert "fine-tuned" in card.data.tags
    assert "## Comparison with the study's baseline" in card.text
    assert "| Matched accuracy | 75.00% | 50.00% | +25.00 pt |" in card.text
    # all-MiniLM-L6-v2 was trained on AllNLI and SQuAD pairs: its card says so under Limitations.
    limitations = card.text.split("## Limitations", 1)[1]
    assert "included SNLI+MultiNLI (AllNLI) and SQuAD pairs" in limitations
    assert (tmp_path / "training_curve.png").is_file()


def test_card_of_squad_run(qa_run, tmp_path):
    staged = Path(push_run(qa_run, "someone/tiny-squad", dry_run_dir=tmp_path / "upload"))
    card = ModelCard.load(staged / "README.md")
    results = json.loads((qa_run / "all_results.json").read_text())
    by_metric = {r.metric_type: r for r in card.data.eval_results}
    assert set(by_metric) == {"exact_match", "f1"}
    assert by_metric["exact_match"].metric_value == results["eval_exact_match"]
    assert by_metric["f1"].metric_value == results["eval_f1"] and by_metric["f1"].metric_name == "F1"
    assert card.data.pipeline_tag == "question-answering" and card.data.datasets == ["rajpurkar/squad"]
    assert "AutoModelForQuestionAnswering" in card.text and "character-level" not in card.text
    assert "trust_remote_code" not in card.text  # a BERT: no custom code


def test_card_of_korquad_run_says_f1_is_character_level(qa_run, tmp_path):
    run = copy_run(qa_run, tmp_path / "korquad")
    info = json.loads((run / "run_info.json").read_text())
    info["metric"] = info["data"]["metric"] = "korquad_v1"
    info["data"]["heldout"] = {"validation_articles": ["a"], "train_articles": ["b", "c"]}
    (run / "run_info.json").write_text(json.dumps(info))
    (run / "recipe.yaml").write_text("heldout_from_file: ../shared/data/korquad_v1/dev.json\nheldout_fraction: 0.1\n")

    card = build_model_card(run, repo_id="someone/tiny-korquad", image_dir=tmp_path)
    results = {r.metric_type: r for r in card.data.eval_results}
    assert set(results) == {"exact_match", "f1"} and results["f1"].metric_name == "F1 (character-level)"
    assert results["f1"].dataset_name == "KorQuAD 1.0 (articles held out of training)"
    assert card.data.language == ["ko"] and card.data.datasets == ["KorQuAD/squad_kor_v1"]
    assert "**character-level** F1" in card.text and "10% of its articles held out" in card.text


# --- Checks that refuse -----------------------------------------------------------------------------------------


def test_secret_scan_refuses_planted_token(scratch_run, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE_HF_TOKEN)
    run = copy_run(scratch_run, tmp_path / "run")
    with (run / "recipe.yaml").open("a") as recipe:
        recipe.write(f"hub_token: {FAKE_HF_TOKEN}\n")
    with pytest.raises(UploadCheckError) as error:
        push_run(run, "someone/leaky", dry_run_dir=tmp_path / "upload")
    message = str(error.value)
    assert "recipe.yaml, line" in message and "Hugging Face token" in message and "the value of HF_TOKEN" in message
    assert FAKE_HF_TOKEN not in message  # reported masked


def test_secret_scan_finds_wandb_key_but_not_the_recorded_commit(scratch_run, tmp_path):
    staged = Path(push_run(scratch_run, "someone/tiny", dry_run_dir=tmp_path / "upload"))
    commit = json.loads((staged / "run_info.json").read_text())["environment"]["git_commit"]
    assert commit is None or len(commit.removesuffix("-dirty")) == 40  # a 40-hex git hash: allowed, the check passed
    with (staged / "all_results.json").open("a") as results:
        results.write("\n" + "0123456789abcdef" * 2 + "01234567\n")  # 40 hex digits: a W&B key's shape
    with pytest.raises(UploadCheckError, match="W&B API key"):
        check_upload_folder(staged)


def test_pickle_weights_and_stray_files_refused(scratch_run, tmp_path):
    run = copy_run(scratch_run, tmp_path / "run")
    from safetensors.torch import load_file

    torch.save(load_file(run / "model.safetensors"), run / "pytorch_model.bin")
    (run / "model.safetensors").unlink()
    with pytest.raises(UploadCheckError, match="pickle"):
        push_run(run, "someone/pickled", dry_run_dir=tmp_path / "upload")

    staged = Path(push_run(scratch_run, "someone/tiny", dry_run_dir=tmp_path / "upload2"))
    torch.save({"step": 1}, staged / "optimizer.pt")
    (staged / "modeling_scratch_transformer.py").unlink()
    with pytest.raises(UploadCheckError) as error:
        check_upload_folder(staged)
    assert "optimizer.pt: a pickle file" in str(error.value)
    assert "modeling_scratch_transformer.py: named by auto_map but missing" in str(error.value)


def test_staging_never_writes_into_the_run_folder(scratch_run):
    with pytest.raises(UploadCheckError, match="outside the run folder"):
        push_run(scratch_run, "someone/tiny", dry_run_dir=scratch_run / "upload")


# --- Pushing without network or token -------------------------------------------------------------------------


def test_push_without_token_fails_before_any_network(scratch_run, tmp_path, monkeypatch):
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)  # ignore a token saved by `hf auth login`
    with pytest.raises(PushError, match="No Hugging Face token"):
        push_run(scratch_run, "someone/tiny")


def test_push_without_network_fails_clearly_and_leaves_the_run(scratch_run, tmp_path):
    before = folder_hash(scratch_run)
    env = subprocess_env(HF_TOKEN=FAKE_HF_TOKEN, HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"))
    env.pop("HF_HUB_OFFLINE", None)  # a real attempt, to an address where nothing answers
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "push_to_hub.py"),
            str(scratch_run),
            "--repo-id",
            "someone/tiny",
            "--private",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Push failed while creating the private repo someone/tiny" in result.stderr
    assert "results are intact" in result.stderr and "retry: python scripts/push_to_hub.py" in result.stderr
    assert "Traceback" not in result.stderr
    assert folder_hash(scratch_run) == before


def test_recipe_push_is_taken_from_the_trainer_and_failure_is_not_fatal(scratch_run, tmp_path):
    from transformers import TrainingArguments

    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        push_to_hub=True,
        hub_model_id="someone/x",
        hub_private_repo=True,
        hub_token=FAKE_HF_TOKEN,
        report_to="none",
    )
    request = take_over_trainer_push(args)
    assert (request.repo_id, request.private, request.token) == ("someone/x", True, FAKE_HF_TOKEN)
    assert args.push_to_hub is False  # the Trainer would otherwise create the repo when built (fails offline)
    assert take_over_trainer_push(args) is None

    before = folder_hash(scratch_run)
    assert push_after_run(scratch_run, request) is None  # HF_HUB_OFFLINE (conftest): fails, logged, not raised
    assert folder_hash(scratch_run) == before


# --- Loading the published layout elsewhere --------------------------------------------------------------------

CLEAN_LOADER = """
import importlib.util, json, sys
sys.path.append(sys.argv[1])  # site-packages only: no .pth files ran, so no editable install of `pipelines`
assert importlib.util.find_spec("pipelines") is None, "pipelines must not be importable here"
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
folder, pairs = sys.argv[2], json.loads(sys.argv[3])
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
batch = tokenizer([p for p, _ in pairs], [h for _, h in pairs], padding=True, return_tensors="pt")
with torch.no_grad():
    logits = model(**batch).logits
print(json.dumps({"module": type(model).__module__, "logits": logits.tolist()}))
"""


def run_where_pipelines_is_absent(code: str, *args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Python in a fresh temp folder, with site-packages but without the repo or the editable install of `pipelines`.

    -I: no PYTHONPATH, no user site, no script folder on sys.path; -S: no site-packages .pth files run (one of them
    installs the editable install's import hook). The code appends site-packages (sys.argv[1]) itself.
    """
    workdir = tmp_path / "elsewhere"
    workdir.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ["PATH"],
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, sysconfig.get_paths()["purelib"], *args],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_pushed_layout_loads_with_remote_code_where_pipelines_is_absent(scratch_run, tmp_path):
    staged = Path(push_run(scratch_run, "someone/tiny", dry_run_dir=tmp_path / "upload"))
    result = run_where_pipelines_is_absent(CLEAN_LOADER, str(staged), json.dumps(PAIRS), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["module"].startswith("transformers_modules.")  # the code shipped in the folder, not our package

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import pipelines.models  # noqa: F401  (our registered classes, in this process)

    tokenizer = AutoTokenizer.from_pretrained(scratch_run)
    model = AutoModelForSequenceClassification.from_pretrained(scratch_run).eval()
    batch = tokenizer([p for p, _ in PAIRS], [h for _, h in PAIRS], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**batch).logits
    torch.testing.assert_close(torch.tensor(loaded["logits"]), expected, atol=1e-5, rtol=0)


def test_the_cards_how_to_use_code_runs(scratch_run, tmp_path):
    staged = Path(push_run(scratch_run, "someone/tiny", dry_run_dir=tmp_path / "upload"))
    text = (staged / "README.md").read_text()
    snippet = text.split("```python\n", 1)[1].split("```", 1)[0].replace('"someone/tiny"', repr(str(staged)))
    preamble = "import sys\nsys.path.append(sys.argv[1])\n"
    result = run_where_pipelines_is_absent(preamble + snippet, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    probabilities = ast.literal_eval(result.stdout.strip().splitlines()[-1])  # the snippet prints {label: probability}
    assert set(probabilities) == {"entailment", "neutral", "contradiction"}
