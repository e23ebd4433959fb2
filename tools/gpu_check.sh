#!/usr/bin/env bash
# Every GPU check of jaxgen in one command that ends within a time budget (default 540 s, for
# a 10-minute call on a machine lent for 15 minutes in all). Prepare the wheels here first:
#   bash tools/fetch_gpu_wheels.sh
# then on the GPU machine (carry .whl), with $OUT collecting the results:
#   bash tools/gpu_check.sh [BUDGET_SECONDS] [STAGES]
#
# Stages, in order of importance, each cut short by its own limit and by what is left of the
# budget (STAGES: a comma-separated subset, default all):
#   bench256  python -m jaxgen.bench for configs/stylegan.py:bench256: sec/kimg, images/s, peak
#             memory, MFU, and a profile of where the GPU time goes (≤ 210 s)
#   bench64   the same for :bench64 (≤ 150 s)
#   diffusion python -m jaxgen.bench for configs/diffusion.py:bench (EDM's CIFAR-10 DDPM++,
#             batch 512: training images/s, sampling images/s at 35 evaluations, MFU), then
#             the official EDM code on the same GPU (tools/edm_reference_bench.py, fp32 as its
#             CIFAR-10 recipe, and --fp16); needs the official source in .edm_src/ (carry it:
#             git archive of github.com/NVlabs/edm, not in this repository) (≤ 200 s)
#   fid       FID Inception throughput and GPU parity with pytorch-fid at default precisions
#             (tools/gpu_metrics_check.py, ≤ 130 s)
#   run64     a real 64×64 run on the embedded dataset, bf16 in the top 4 resolutions: SWD every
#             250 steps, stops on any NaN/Inf; with the pytorch-fid parity tests
#             (tests/test_inception.py) beside it on the CPU (the rest of the budget)
#
# $OUT receives at most 10 files: gpu_check.log (everything), bench256.json, bench64.json,
# bench_diffusion.json, edm_fp32.json, edm_fp16.json,
# gpu_metrics_check.json, run64_swd.txt, run64_reals.png, run64_samples.png.
set -uo pipefail
cd "$(dirname "$0")/.."
budget=${1:-540}
stages=${2:-bench256,bench64,diffusion,fid,run64}
start=$(date +%s)
out=${OUT:-/tmp/gpu_check}
export OUT=$out  # gpu_metrics_check.py writes its JSON there.
mkdir -p "$out"
log=$out/gpu_check.log
: > "$log"
say() { echo "[$(( $(date +%s) - start ))s] $*" | tee -a "$log"; }
left() { echo $(( budget - ($(date +%s) - start) )); }
want() { [[ ,$stages, == *,$1,* ]]; }
# stage NAME LIMIT CMD...: runs CMD under min(LIMIT, what is left), output into the log.
stage() {
  local name=$1 limit=$2
  shift 2
  local t
  t=$(left)
  (( t > limit )) && t=$limit
  if (( t < 20 )); then say "$name: skipped, ${t}s left"; return 0; fi
  say "$name: start (limit ${t}s)"
  timeout --kill-after=5 "$t" "$@" >> "$log" 2>&1
  local status=$?
  say "$name: exit status $status$( (( status == 124 )) && echo ' (time limit)')"
}

if ! python3 -c 'import grain, ml_collections, tensorboardX, pytorch_fid' 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl >> "$log" 2>&1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# Programs compiled by one stage are reused by the next where they are the same (bench64's
# step variants and run64's).
export JAX_COMPILATION_CACHE_DIR=/tmp/jax_cache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> "$log" 2>&1
python3 -c 'import jax, flax, optax, torch; print("jax", jax.__version__, jax.devices(),
"flax", flax.__version__, "optax", optax.__version__, "torch", torch.__version__)' >> "$log" 2>&1

for preset in bench256 bench64; do
  want $preset || continue
  limit=$([[ $preset == bench256 ]] && echo 210 || echo 150)
  stage "$preset" "$limit" python3 -m jaxgen.bench --config=configs/stylegan.py:$preset \
    --steps=64 --warmup=16 --profile=5 \
    --profile_dir=/tmp/profile_$preset --output="$out/$preset.json"
done

if want diffusion; then
  stage diffusion 110 python3 -m jaxgen.bench --config=configs/diffusion.py:bench \
    --steps=20 --warmup=5 --sample_batches=2 --output="$out/bench_diffusion.json"
  if [ -d .edm_src ]; then
    stage edm_fp32 60 env EDM_SRC=.edm_src python3 tools/edm_reference_bench.py \
      --steps=20 --warmup=5 --sample_batches=2 --output="$out/edm_fp32.json"
    stage edm_fp16 50 env EDM_SRC=.edm_src python3 tools/edm_reference_bench.py --fp16 \
      --steps=20 --warmup=5 --sample_batches=1 --output="$out/edm_fp16.json"
  else
    say "edm reference: skipped, no .edm_src/ (the official source)"
  fi
fi

if want fid; then
  # JAX and PyTorch share the GPU in one process: leave PyTorch room.
  XLA_PYTHON_CLIENT_MEM_FRACTION=0.6 stage fid 130 python3 tools/gpu_metrics_check.py \
    --num=2000 --steps=20
fi

if want run64; then
  # The parity tests (pytorch-fid fp32 on the CPU against jaxgen on the GPU) beside the run.
  XLA_PYTHON_CLIENT_PREALLOCATE=false timeout "$(( $(left) > 20 ? $(left) - 10 : 10 ))" \
    python3 -m pytest -q -p no:cacheprovider tests/test_inception.py > /tmp/parity.log 2>&1 &
  parity=$!
  # bench64's networks and batch (the same step programs), no augmentation, 20k images.
  XLA_PYTHON_CLIENT_PREALLOCATE=false stage run64 100000 python3 -m jaxgen.main \
    --config=configs/stylegan.py:bench64 --workdir=/tmp/run64 --config.data.num_images=20000 \
    --config.train.num_steps=100000 --config.eval.every_steps=250 \
    --config.eval.num_images=2048 --config.checkpoint.every_steps=1000 \
    --config.log.every_steps=50
  wait $parity
  say "parity tests: exit status $?"
  cat /tmp/parity.log >> "$log"
  grep -a 'step [0-9]*: .*swd\|Finished\|error\|non-finite' "$log" > "$out/run64_swd.txt"
  cp /tmp/run64/samples/reals.png "$out/run64_reals.png" 2>/dev/null
  last=$(ls /tmp/run64/samples 2>/dev/null | grep -v reals | sort | tail -1)
  [ -n "$last" ] && cp "/tmp/run64/samples/$last" "$out/run64_samples.png"
fi

# The headline figures, last in the log (and so in the call's output tail).
python3 - "$out" <<'EOF' 2>&1 | tee -a "$log"
import json, os, sys
for name in ('bench256', 'bench64'):
  path = os.path.join(sys.argv[1], f'{name}.json')
  if os.path.exists(path):
    f = json.load(open(path))
    print(name, {k: f.get(k) for k in ('device', 'sec_per_kimg', 'images_per_s', 'step_ms',
                                        'peak_memory_gib', 'mfu', 'compile_s', 'finite')})
    print(name, 'by phase', f.get('profile', {}).get('by_phase'))
for name in ('bench_diffusion', 'edm_fp32', 'edm_fp16'):
  path = os.path.join(sys.argv[1], f'{name}.json')
  if os.path.exists(path):
    f = json.load(open(path))
    print(name, {k: f.get(k) for k in ('device', 'images_per_s', 'step_ms', 'mfu',
                                        'sample_images_per_s', 'sample_mfu', 'peak_memory_gib',
                                        'compile_s', 'finite', 'fp16')})
path = os.path.join(sys.argv[1], 'gpu_metrics_check.json')
if os.path.exists(path):
  m = json.load(open(path))
  print('inception images/s', m['images_per_s'])
  for row in m['rows']:
    print('fid', row)
EOF
say "done"
