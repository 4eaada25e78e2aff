#!/usr/bin/env bash
# The published-size edit benchmark on one CUDA GPU, every variant in one go; JSON per variant under ${OUT:-gpu-bench}.
# Random weights at the published shapes: nothing is downloaded. Each variant is its own process (clean peaks);
# its stderr (.err) says how far it got ("[bench] ..." lines) when a time limit stops it.
#   bash scripts/gpu_edit_bench.sh            # at most 13 minutes on one H200 (each variant has a time limit)
# Needs torch (CUDA), transformers, diffusers, numpy, pillow; run from the repository root.
set -u
out=${OUT:-gpu-bench}
mkdir -p "$out"
run() {  # seconds, name, then bench arguments
    local limit=$1 name=$2
    shift 2
    timeout "$limit" python -m editmgt_core.bench edit --random-weights --config editmgt --size 1024 --steps 36 \
        --device cuda "$@" >"$out/$name.json" 2>"$out/$name.err" || echo "$name failed ($?)" >&2
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$out/gpu.txt" 2>&1
run 180 bf16 --dtype bf16 --repeats 3                                   # the main row, with the eager fp32 ratio
run 150 bf16_offload --dtype bf16 --offload --no-fp32 --quick --repeats 2  # peaks with the text encoders offloaded
run 240 bf16_graphs --dtype bf16 --compile reduce-overhead --no-fp32 --quick --repeats 3
run 180 bf16_compile --dtype bf16 --compile default --no-fp32 --quick --repeats 3
python -m editmgt_core.bench.gpu >"$out/steps.json" 2>"$out/steps.err" || echo "bench_gpu failed" >&2
ls -l "$out"
