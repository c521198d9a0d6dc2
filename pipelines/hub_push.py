"""Publishing a finished run to the Hugging Face Hub: stage the exact folder to upload, check it, then upload it.

    push_run("outputs/mnli/minilm_cpu", "me/minilm-mnli", private=True)          # upload
    push_run("outputs/mnli/minilm_cpu", "me/minilm-mnli", dry_run_dir="staged")  # only stage and check

The run folder itself is only ever read. What is uploaded is a copy, staged in a separate folder:
- the weights (safetensors only: a pickle file runs code when loaded, so .bin/.pt weights are refused), config.json,
  the tokenizer files, and the model code a custom architecture needs (the .py files the config's auto_map names,
  and the files they import);
- README.md (the model card, pipelines/model_card.py) and training_curve.png;
- all_results.json, run_info.json and recipe.yaml, so the results can be checked and the run repeated.
Never uploaded: optimizer and scheduler states, checkpoint-* folders, wandb/, trainer_state.json, training
arguments, predictions.

Before anything leaves the machine the staged folder is checked (`check_upload_folder`): the card's metadata
parses, the weights are safetensors, the custom code is there, nothing else is there, and no file holds a
secret (a Hugging Face token, a W&B key, or the value of HF_TOKEN / HUGGING_FACE_HUB_TOKEN / WANDB_API_KEY).

Recipes: the Trainer's own `push_to_hub` would create the repo when the Trainer is built (so with no network a
run fails before training) and upload without these checks. `take_over_trainer_push` turns it off and keeps the
request, and `push_after_run` pushes this way once the run's results are on disk.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import RunStoppedError, UserInputError
from pipelines.model_card import CURVE_IMAGE, DEFAULT_LICENSE, build_model_card
from pipelines.run_folder import RunFolderError

logger = logging.getLogger("pipelines")

RUN_FILES = (
    "config.json",
    "generation_config.json",
    "all_results.json",
    "run_info.json",
    "recipe.yaml",
    "data_splits.json",
)
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)
CARD_FILES = ("README.md", CURVE_IMAGE)
WEIGHT_FILE = re.compile(r"^model(-\d{5}-of-\d{5})?\.safetensors$")
WEIGHT_INDEX = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")

SECRET_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY")
HF_TOKEN = re.compile(rb"hf_[A-Za-z0-9]{30,}")
WANDB_KEY = re.compile(rb"(?<![0-9A-Za-z])[0-9a-f]{40}(?![0-9A-Za-z])")  # also the shape of a git commit hash
COMMIT_CONTEXT = re.compile(rb"(commit|sha|revision|hash)", re.IGNORECASE)


class PushError(RunStoppedError, RuntimeError):
    """The upload could not be done (no token, no network, refused by the Hub); the run folder is unchanged."""


class UploadCheckError(UserInputError, ValueError):
    """The staged folder is not fit to publish (bad card, pickle weights, missing code, a secret, a stray file)."""


# --- Staging --------------------------------------------------------------------------------------------------


def code_files(folder: Path) -> list[str]:
    """The .py files a custom architecture needs: those named by auto_map in config.json and tokenizer_config.json,
    and, recursively, the files they import relatively (modeling_x.py imports configuration_x.py)."""
    from transformers.dynamic_module_utils import get_relative_imports

    wanted = []
    for config_name in ("config.json", "tokenizer_config.json"):
        path = folder / config_name
        auto_map = json.loads(path.read_text(encoding="utf-8")).get("auto_map") if path.is_file() else None
        for value in (auto_map or {}).values():
            for reference in value if isinstance(value, list) else [value]:
                if reference:  # "module.Class", or "repo--module.Class" when the code lives in another repo
                    wanted.append(reference.split("--")[-1].rsplit(".", 1)[0] + ".py")
    found = []
    while wanted:
        name = wanted.pop()
        if name in found:
            continue
        found.append(name)
        if (folder / name).is_file():
            wanted += [module + ".py" for module in get_relative_imports(str(folder / name))]
    return sorted(found)


def stage_upload_folder(
    output_dir: str | Path,
    staging_dir: str | Path,
    repo_id: str,
    baseline_run: str | Path | None = None,
    license: str = DEFAULT_LICENSE,
) -> list[str]:
    """Copy what would be uploaded into staging_dir (empty or new) and write the model card. Returns the file names."""
    output_dir, staging_dir = Path(output_dir).resolve(), Path(staging_dir).resolve()
    for required in ("config.json", "run_info.json", "all_results.json"):
        if not (output_dir / required).is_file():
            raise UploadCheckError(
                f"{output_dir / required} not found: {output_dir} is not the output folder of a finished run"
            )
    if staging_dir == output_dir or output_dir in staging_dir.parents:
        raise UploadCheckError(f"Stage outside the run folder (got {staging_dir}): the run folder is never written to")
    if staging_dir.exists() and any(staging_dir.iterdir()):
        raise UploadCheckError(f"{staging_dir} is not empty: give a new or empty folder for the upload")

    weights = sorted(p.name for p in output_dir.iterdir() if WEIGHT_FILE.match(p.name))
    if not weights:
        pickled = sorted(
            p.name for p in output_dir.iterdir() if p.suffix in PICKLE_SUFFIXES and p.name != "training_args.bin"
        )
        raise UploadCheckError(
            f"No safetensors weights in {output_dir}"
            + (
                f"; found pickle files {pickled}, which are not uploaded (loading a pickle runs code). "
                "Re-save the model "
                "with model.save_pretrained(folder) (safetensors is the default) and push that folder."
                if pickled
                else "."
            )
        )
    needed_code = code_files(output_dir)
    missing_code = [name for name in needed_code if not (output_dir / name).is_file()]
    if missing_code:
        raise UploadCheckError(f"config.json's auto_map names code that is not in {output_dir}: {missing_code}")

    names = [*weights, *needed_code]
    names += [n for n in (*RUN_FILES, *TOKENIZER_FILES, WEIGHT_INDEX) if (output_dir / n).is_file()]
    staging_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy2(output_dir / name, staging_dir / name)
    card = build_model_card(
        output_dir, repo_id=repo_id, baseline_run=baseline_run, image_dir=staging_dir, license=license
    )
    card.save(staging_dir / "README.md")
    return sorted(p.name for p in staging_dir.iterdir())


# --- Checking -------------------------------------------------------------------------------------------------


def known_secrets(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Secret values this machine holds (environment variables, and e.g. the push token): name -> value."""
    secrets = {name: os.environ[name] for name in SECRET_ENV_VARS if len(os.environ.get(name, "")) >= 8}
    secrets.update({f"token #{i + 1}": value for i, value in enumerate(extra) if value and len(value) >= 8})
    return secrets


def recorded_commits(folder: Path) -> set[bytes]:
    """Git commit hashes the run recorded on purpose (run_info.json): 40 hex digits like a W&B key, but public."""
    info_path = folder / "run_info.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    commit = str((info.get("environment") or {}).get("git_commit") or "").removesuffix("-dirty")
    return {commit.encode()} if commit else set()


def mask(secret: bytes | str) -> str:
    text = secret.decode(errors="replace") if isinstance(secret, bytes) else secret
    return text[:5] + "..." if len(text) > 8 else "..."


def searchable_bytes(path: Path) -> bytes:
    """The bytes of a file that could hold text. For safetensors that is the JSON header (names, shapes and free-form
    metadata): the rest is raw numbers, and scanning hundreds of MB of them would take seconds for nothing."""
    if path.suffix != ".safetensors":
        return path.read_bytes()
    with path.open("rb") as weights:
        header_length = int.from_bytes(weights.read(8), "little")
        return weights.read(min(header_length, 100_000_000))


def scan_for_secrets(folder: str | Path, extra_secrets: tuple[str, ...] = ()) -> list[str]:
    """Every file, text or binary (safetensors: its header): Hugging Face tokens, 40-hex W&B keys (a git hash that
    run_info.json records, or one on a line that says commit/sha/revision/hash, is allowed) and known secret values.
    Returns findings as 'file, line N: what' with the secret masked."""
    folder = Path(folder)
    secrets = {name: value.encode() for name, value in known_secrets(extra_secrets).items()}
    allowed_hex = recorded_commits(folder)
    findings = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = searchable_bytes(path)

        def where(offset: int) -> str:
            line = data.count(b"\n", 0, offset) + 1
            return f"{path.relative_to(folder)}, line {line}"

        for match in HF_TOKEN.finditer(data):
            findings.append(f"{where(match.start())}: a Hugging Face token ({mask(match.group())})")
        for match in WANDB_KEY.finditer(data):
            line_start = data.rfind(b"\n", 0, match.start()) + 1
            if match.group() in allowed_hex or COMMIT_CONTEXT.search(data[line_start : match.start()]):
                continue
            findings.append(
                f"{where(match.start())}: 40 hex digits, the shape of a W&B API key ({mask(match.group())})"
            )
        for name, value in secrets.items():
            offset = data.find(value)
            if offset >= 0:
                findings.append(f"{where(offset)}: the value of {name} ({mask(value)})")
    return findings


def check_upload_folder(folder: str | Path, extra_secrets: tuple[str, ...] = ()) -> None:
    """Raise UploadCheckError listing every problem of a staged folder; return quietly when it is fit to publish."""
    from huggingface_hub import ModelCard
    from safetensors import safe_open

    folder = Path(folder)
    problems = []
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    code = code_files(folder)
    allowed = {*RUN_FILES, *TOKENIZER_FILES, *CARD_FILES, WEIGHT_INDEX, *code}
    for name in names:
        if name.endswith(PICKLE_SUFFIXES):
            problems.append(f"{name}: a pickle file (loading it runs code); only safetensors weights are published")
        elif name not in allowed and not WEIGHT_FILE.match(name):
            problems.append(
                f"{name}: not part of a published run (only weights, config, tokenizer, code, card and results)"
            )

    weights = [name for name in names if WEIGHT_FILE.match(name)]
    if not weights:
        problems.append("no model*.safetensors weights")
    for name in weights:
        try:
            with safe_open(str(folder / name), framework="pt") as weights_file:
                weights_file.keys()
        except Exception as error:  # any failure to read the header means a broken file
            problems.append(f"{name}: not a readable safetensors file ({type(error).__name__}: {error})")
    problems += [f"{name}: named by auto_map but missing" for name in code if not (folder / name).is_file()]

    if not (folder / "README.md").is_file():
        problems.append("README.md (the model card) is missing")
    else:
        try:
            card = ModelCard.load(folder / "README.md")
            if not card.data.eval_results:
                problems.append("README.md: the metadata has no model-index results")
            if not card.data.license:
                problems.append("README.md: the metadata has no license")
        except Exception as error:  # yaml or metadata errors, whatever their type
            problems.append(f"README.md: the metadata does not parse ({type(error).__name__}: {error})")

    problems += [f"secret found in {finding}" for finding in scan_for_secrets(folder, extra_secrets)]
    if problems:
        raise UploadCheckError(f"{folder} is not fit to publish:\n- " + "\n- ".join(problems))


# --- Pushing --------------------------------------------------------------------------------------------------


def resolve_token(token: str | None, token_env: str | None) -> str | None:
    """An explicit token, else the named environment variable, else what `hf auth login` saved (or HF_TOKEN)."""
    if token:
        return token
    if token_env and os.environ.get(token_env):
        return os.environ[token_env]
    from huggingface_hub import get_token

    return get_token()


def push_run(
    output_dir: str | Path,
    repo_id: str,
    private: bool = False,
    token: str | None = None,
    token_env: str | None = "HF_TOKEN",
    dry_run_dir: str | Path | None = None,
    baseline_run: str | Path | None = None,
    license: str = DEFAULT_LICENSE,
    commit_message: str | None = None,
) -> str:
    """Stage, check and upload a finished run to the Hub model repo `repo_id` (created when missing).

    With dry_run_dir, stop after staging and checking: the folder stays there for inspection. Returns the repo URL
    (or the dry-run folder). Raises UploadCheckError when the folder is unfit, PushError when the upload fails.
    """
    output_dir = Path(output_dir)
    retry = (
        f"python scripts/push_to_hub.py {output_dir} --repo-id {repo_id}"
        + (" --private" if private else "")
        + (f" --token-env {token_env}" if token_env and token_env != "HF_TOKEN" else "")
    )
    token = None if dry_run_dir is not None else resolve_token(token, token_env)
    extra_secrets = tuple(t for t in (token,) if t)

    if dry_run_dir is not None:
        stage_upload_folder(output_dir, dry_run_dir, repo_id, baseline_run, license)
        check_upload_folder(dry_run_dir, extra_secrets)
        return str(dry_run_dir)
    if not token:
        raise PushError(
            f"No Hugging Face token: set {token_env or 'HF_TOKEN'} or run `hf auth login`, then retry: {retry}\n"
            f"Nothing was uploaded; {output_dir} is unchanged. To see what would be uploaded: add --dry-run <folder>."
        )
    with tempfile.TemporaryDirectory(prefix="push-") as staging:
        stage_upload_folder(output_dir, staging, repo_id, baseline_run, license)
        check_upload_folder(staging, extra_secrets)
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        step = f"creating the {'private' if private else 'public'} repo {repo_id}"
        try:
            url = api.create_repo(repo_id, private=private, exist_ok=True)
            step = f"uploading {staging} to {repo_id}"
            api.upload_folder(
                repo_id=str(url.repo_id),
                folder_path=staging,
                commit_message=commit_message or f"Upload {output_dir.name}: model, card and results",
            )
        except Exception as error:  # network, auth, permissions: all end the same way, with the same advice
            raise PushError(
                f"Push failed while {step}: {type(error).__name__}: {error}\n"
                f"Nothing in {output_dir} was changed; its results are intact. Check the network and the token "
                f"(write access to {repo_id.split('/')[0] if '/' in repo_id else 'your namespace'}), "
                f"then retry: {retry}"
            ) from error
    logger.info("Pushed %s to %s", output_dir, url)
    return str(url)


# --- From a recipe --------------------------------------------------------------------------------------------


@dataclass
class PushRequest:
    repo_id: str
    private: bool
    token: str | None


def take_over_trainer_push(training_args) -> PushRequest | None:
    """The recipe's push_to_hub / hub_model_id / hub_private_repo / hub_token as a request for `push_after_run`,
    with the Trainer's own push turned off (call before building the Trainer). None when the recipe does not push."""
    if not training_args.push_to_hub:
        return None
    request = PushRequest(
        repo_id=training_args.hub_model_id
        or Path(training_args.output_dir).name,  # a bare name goes to the token's user
        private=bool(training_args.hub_private_repo),
        token=training_args.hub_token,
    )
    training_args.push_to_hub = False
    return request


def push_after_run(output_dir: str | Path, request: PushRequest | None) -> str | None:
    """Push a finished run as its recipe asked; a failure is logged, never raised: the results are already on disk."""
    if request is None:
        return None
    try:
        return push_run(output_dir, request.repo_id, private=request.private, token=request.token)
    except (PushError, UploadCheckError, RunFolderError) as error:  # RunFolderError includes ModelCardError
        logger.error("%s", error)
        return None
