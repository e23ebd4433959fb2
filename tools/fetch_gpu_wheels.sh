#!/usr/bin/env bash
# Wheels that the GPU machine (Python 3.12, JAX with CUDA, flax, optax, orbax) lacks for
# training and benchmarking: grain (+ array_record, portpicker), ml-collections, tensorboardX;
# and pytorch-fid (pure Python) for the FID parity checks.
# Saved into .whl/ (git-ignored); carry `.whl` to the machine and install with
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
set -euo pipefail
cd "$(dirname "$0")/.."
for spec in grain==0.2.18 array_record==0.8.6 portpicker ml_collections==1.1.0 \
            tensorboardX==2.6.5 pytorch-fid==0.3.0; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "$spec"
done
ls -la .whl
