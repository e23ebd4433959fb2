#!/usr/bin/env bash
# FID Inception on a GPU machine: parity tests against pytorch-fid, then GPU parity at default
# precisions and throughput (tools/gpu_metrics_check.py). About 5 minutes on one H100.
#
#   bash tools/gpu_metrics_check.sh
#
# Needs torch + torchvision + jax[cuda] + flax + scipy, and pytorch-fid: importable, or its
# pure-Python wheel in .whl/ (put on PYTHONPATH here). Writes its logs to $OUT when set.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! python -c 'import pytorch_fid' 2>/dev/null; then
  for whl in .whl/pytorch_fid*.whl; do
    [ -e "$whl" ] && export PYTHONPATH="$PYTHONPATH:$PWD/$whl"
  done
fi
python -c 'import torch, torchvision, pytorch_fid, jax; print("jax devices:", jax.devices())'
# JAX and PyTorch share the GPU in one process: leave PyTorch room.
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.6}
log=${OUT:-/tmp}
# 1. The parity tests (pytorch-fid on the CPU in fp32 vs jaxgen at fp32 on the default JAX
#    device, here the GPU).
set +e
python -m pytest -q -s --noconftest -p no:cacheprovider tests/test_inception.py 2>&1 \
  | tee "$log/parity_tests.log"
tests_status=${PIPESTATUS[0]}
# 2. GPU parity at default precisions and throughput.
python tools/gpu_metrics_check.py "$@" 2>&1 | tee "$log/gpu_metrics_check.log"
check_status=${PIPESTATUS[0]}
echo "parity tests exit status: $tests_status; gpu_metrics_check exit status: $check_status"
exit $(( tests_status || check_status ))
