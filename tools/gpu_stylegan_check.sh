#!/usr/bin/env bash
# StyleGAN2 on a GPU machine: the issue's benchmarks and a short real run (about 9 minutes on
# one H100, compilation included). Prepare the wheels here first: bash tools/fetch_gpu_wheels.sh,
# then on the device machine (carry .whl):
#
#   bash tools/gpu_stylegan_check.sh [bench|run|all]
#
#   bench  python -m jaxgen.bench for configs/stylegan.py:bench256 and :bench64 (sec/kimg,
#          images/s, peak memory, MFU, and with --profile where the GPU time goes: by phase,
#          by model block and direction, top XLA ops), JSON into $OUT;
#   run    a real 64×64 run on the embedded dataset with bf16 in the top resolutions, 4 minutes
#          of training: SWD every 500 steps, sample grids and the loss curves into $OUT; fails on
#          any NaN/Inf (the training loop stops on non-finite metrics).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
out=${OUT:-/tmp/gpu_stylegan}
mkdir -p "$out"
if ! python3 -c 'import grain, ml_collections, tensorboardX' 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
if [[ $what == bench || $what == all ]]; then
  for preset in bench64 bench256; do
    python3 -m jaxgen.bench --config=configs/stylegan.py:$preset --steps=160 --warmup=32 \
      --profile=10 --profile_dir=/tmp/profile_$preset \
      --output="$out/$preset.json" 2>&1 | tee "$out/$preset.log"
  done
fi
if [[ $what == run || $what == all ]]; then
  # 64×64, batch 64, the official networks (bf16 in the 4 highest resolutions), ADA on.
  timeout 330 python3 -m jaxgen.main --config=configs/stylegan.py:bench64 \
    --workdir=/tmp/sg64 --config.augment.mode=ada --config.data.num_images=20000 \
    --config.train.num_steps=100000 --config.eval.every_steps=500 \
    --config.checkpoint.every_steps=500 --config.log.every_steps=100 2>&1 \
    | tr '\r' '\n' | grep -v '^\s*$' | tail -40 | tee "$out/run64.log" || true
  cp /tmp/sg64/samples/reals.png "$out/" 2>/dev/null || true
  last=$(ls /tmp/sg64/samples | grep -v reals | sort | tail -1)
  [ -n "$last" ] && cp "/tmp/sg64/samples/$last" "$out/last_samples.png"
fi
