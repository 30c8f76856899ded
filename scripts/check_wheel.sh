#!/usr/bin/env bash
# What `pip install .` gives a user: build the wheel, install it with the search extra into a
# fresh virtual environment, then run `pruna-search --help` and a 2-trial study from an
# unrelated folder (nothing of the checkout on the path). CI runs it after the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check build
"$tmp/venv/bin/python" -m build --wheel --outdir "$tmp/dist" . >"$tmp/build.log" 2>&1 \
    || { cat "$tmp/build.log"; exit 1; }
wheel=$(ls "$tmp"/dist/pruna_search-*.whl)
echo "built $(basename "$wheel"): $(unzip -l "$wheel" | grep -c 'pruna_search/conf/.*\.yaml') config files"
"$tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check -c constraints.txt "$wheel[search]"
mkdir "$tmp/elsewhere"
cd "$tmp/elsewhere"
"$tmp/venv/bin/pruna-search" --help | head -2
PRUNA_SEARCH_CACHE="$tmp/cache" PRUNA_SEARCH_PROGRESS=0 "$tmp/venv/bin/pruna-search" \
    study.n_trials=2 tracking=none finetune.trial_steps=5 finetune.final_steps=10 \
    target.min_runs=20 target.max_runs=40 target.noise_retries=0 hydra.run.dir=run | tail -3
test -s run/best.onnx
echo "check_wheel: the installed wheel ran a 2-trial study from $(pwd)"
