#!/usr/bin/env bash
# The one command for a GPU machine (the package installed with `pip install -e .` and a CUDA build of torch):
#
#   bash scripts/gpu_check.sh                 # writes gpu_check.md in the repository root, in under 8 minutes
#   bash scripts/gpu_check.sh out.md --data-dir /path/to/shared/data   # any further arguments go to gpu_check.py
#
# The checks share a 7-minute budget (--budget 420) and each has its own timeout; `timeout` is the last resort.
# The summary is rewritten after every check, so it is there even if this is killed. Exit status 1: a check failed.
set -u
cd "$(dirname "$0")/.."
output="${1:-gpu_check.md}"
shift || true
exec timeout --kill-after 10 475 python scripts/gpu_check.py --output "$output" "$@"
