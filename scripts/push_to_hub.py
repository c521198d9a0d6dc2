"""Publish a finished run to the Hugging Face Hub: weights (safetensors), config, tokenizer, model code, model card
and results, after checking the upload folder (card metadata, no pickle files, no secrets).

    python scripts/push_to_hub.py outputs/mnli/minilm_cpu --repo-id me/minilm-mnli --private
    python scripts/push_to_hub.py outputs/mnli/minilm_cpu --repo-id me/minilm-mnli --dry-run /tmp/upload
    python scripts/push_to_hub.py outputs/mnli/scratch_cpu --repo-id me/scratch-mnli \\
        --baseline-run outputs/mnli/minilm_cpu

--dry-run DIR writes the exact folder that would be uploaded to DIR and checks it, with no network or token.
The token comes from the environment variable named by --token-env (default HF_TOKEN), else from `hf auth login`.
Exit status: 0 done, 2 the folder is unfit to publish, 1 the push failed (the run folder is never changed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines import cli
from pipelines.hub_push import push_run
from pipelines.model_card import DEFAULT_LICENSE


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir", type=Path, help="The output folder of a finished run.")
    parser.add_argument("--repo-id", required=True, help="Hub model repo, user/name (created when missing).")
    parser.add_argument("--private", action="store_true", help="Create the repo as private.")
    parser.add_argument(
        "--dry-run", type=Path, metavar="DIR", help="Stage and check the upload in DIR (new or empty); upload nothing."
    )
    parser.add_argument(
        "--token-env", default="HF_TOKEN", help="Environment variable holding the Hub token (default: HF_TOKEN)."
    )
    parser.add_argument(
        "--baseline-run", type=Path, help="Output folder of the study's baseline run, compared in the card."
    )
    parser.add_argument(
        "--license", default=DEFAULT_LICENSE, help=f"Licence of the model (Hub identifier, default {DEFAULT_LICENSE})."
    )
    parser.add_argument("--commit-message", help="Commit message on the Hub.")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    where = push_run(
        args.output_dir,
        args.repo_id,
        private=args.private,
        token_env=args.token_env,
        dry_run_dir=args.dry_run,
        baseline_run=args.baseline_run,
        license=args.license,
        commit_message=args.commit_message,
    )
    if args.dry_run is None:
        print(f"Pushed {args.output_dir} to {where}")
        return 0
    print(f"Dry run: the upload for {args.repo_id} is staged in {where} and passed every check. Files:")
    for path in sorted(Path(where).iterdir()):
        print(f"  {path.name:45s} {path.stat().st_size:>12,} bytes")
    return 0


if __name__ == "__main__":
    cli.run(main)
