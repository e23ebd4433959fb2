#!/usr/bin/env bash
# Starts N jaxgen processes on this machine, joined into one job by jax.distributed: one process
# per GPU on a multi-GPU box, or a multi-host job in miniature on a laptop CPU (to try
# multi-process code before a pod). The command is the single-process one:
#
#   launch/local.sh 2 python -m jaxgen.main --config=configs/dcgan.py --workdir=/tmp/dcgan2
#
# Each process gets --coordinator_address=127.0.0.1:PORT --num_processes=N --process_id=I.
# Devices: with CUDA GPUs, process I sees GPU I (CUDA_VISIBLE_DEVICES; N ≤ the GPU count);
# otherwise every process runs on the CPU with $CPU_DEVICES_PER_PROCESS devices (default 1).
# Process 0 prints to this terminal; process I logs to $LOG_DIR/process_I.log (default: a new
# temporary folder). Ctrl-C or SIGTERM is passed on to every process (training saves a
# checkpoint and exits with 143); if one process fails, the others are stopped. The exit status
# is the first failure's, else 0. PORT: $COORDINATOR_PORT, or a free one.
set -uo pipefail

usage() {
  echo "usage: launch/local.sh NUM_PROCESSES python -m jaxgen.main --config=... --workdir=..." >&2
  exit 2
}
(( $# >= 2 )) || usage
num=$1
shift
[[ $num =~ ^[1-9][0-9]*$ ]] || { echo "launch/local.sh: error: NUM_PROCESSES must be a" \
  "positive integer, not '$num'" >&2; exit 2; }
python=${PYTHON:-python3}
port=${COORDINATOR_PORT:-$("$python" -c 'import socket; s = socket.socket();
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
log_dir=${LOG_DIR:-$(mktemp -d -t jaxgen_launch.XXXXXX)}
mkdir -p "$log_dir"

gpus=0
if command -v nvidia-smi > /dev/null 2>&1; then
  gpus=$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | wc -l)
fi
if (( gpus > 0 && num > gpus )); then
  echo "launch/local.sh: error: $num processes but $gpus GPU(s): one process per GPU," \
    "at most $gpus" >&2
  exit 2
fi

pids=()
for (( i = 0; i < num; i++ )); do
  if (( gpus > 0 )); then
    device_env=(CUDA_VISIBLE_DEVICES=$i)
  else
    device_env=(JAX_PLATFORMS=cpu
                "XLA_FLAGS=${XLA_FLAGS:-} --xla_force_host_platform_device_count=${CPU_DEVICES_PER_PROCESS:-1}")
  fi
  args=("$@" "--coordinator_address=127.0.0.1:$port" "--num_processes=$num" "--process_id=$i")
  if (( i == 0 )); then
    env "${device_env[@]}" "${args[@]}" &
  else
    env "${device_env[@]}" "${args[@]}" > "$log_dir/process_$i.log" 2>&1 &
  fi
  pids+=($!)
done
(( num > 1 )) && echo "launch/local.sh: $num processes (coordinator 127.0.0.1:$port); logs of" \
  "processes 1..$(( num - 1 )) in $log_dir" >&2

# Ctrl-C or SIGTERM: SIGTERM to every process (background processes of a script ignore SIGINT),
# each then checkpoints and exits.
forward() { kill -s TERM "${pids[@]}" 2>/dev/null; }
stopped=0
trap 'stopped=1; forward' INT TERM

# Wait for all; on the first failure stop the rest (they would wait for it forever). Polling
# (not `wait -n`) keeps this to the bash of macOS too.
status=0
running=("${pids[@]}")
while (( ${#running[@]} > 0 )); do
  still=()
  for pid in "${running[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      still+=("$pid")
      continue
    fi
    wait "$pid"
    code=$?
    if (( code != 0 && status == 0 )); then
      status=$code
      (( stopped )) && continue  # Stopped by a signal we passed on: no failure to report.
      for (( i = 0; i < num; i++ )); do
        [[ ${pids[$i]} == "$pid" ]] || continue
        where=$( (( i > 0 )) && echo "; its log: $log_dir/process_$i.log")
        echo "launch/local.sh: process $i exited with status $code$where" >&2
      done
      forward
    fi
  done
  running=("${still[@]+"${still[@]}"}")
  (( ${#running[@]} > 0 )) && sleep 1
done
exit $status
