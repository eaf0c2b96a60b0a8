#!/usr/bin/env bash
# ResNet-18 chips on one GPU: throughput, peak memory, chunk scaling (about 3-5 minutes).
# Run from the repository root on a machine with an NVIDIA GPU; writes runs/gpu-benchmark.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3.11 -m venv .venv-gpu && . .venv-gpu/bin/activate
pip install -q -e . "jax[cuda12]"
python -c "import jax; assert jax.default_backend() == 'gpu', jax.devices(); print(jax.devices())"
timeout 540 python -m experiments.benchmarks.gpu --out runs/gpu-benchmark.json
