#!/usr/bin/env bash
# A decoder round on one CUDA GPU (docs/bundle.md, "A token trunk, and where the edges go wrong"): the bundle's
# decoder, the super-resolving head and a code trunk trained together for MINUTES from the bundle's tokenizer (its
# encoder and codebook frozen: no token changes), then both decoders judged on the same edits of development seed
# 555 (decoder_compare: pixel judge, shape judge, the tokenizer ceiling, other objects changed).
# Run from the repository root. Writes OUT/train/vqvae (the decoder to adopt or not), OUT/train/sr_report.json and
# OUT/compare/decoder_compare.{json,md} (N=0: no comparison; it runs as well on a CPU afterwards, about 4 s a
# record here). For a device call whose results come back flat (about 7 minutes of training, 2 of comparison):
#   OUT=/tmp/r N=150 bash scripts/gpu_decoder_round.sh && cp /tmp/r/train/vqvae/* /tmp/r/train/sr_report.json \
#       /tmp/r/compare/decoder_compare.json /tmp/r/compare/decoder_compare.md "$RESULTS"/
# DEVICE=cpu MINUTES=0.3 N=3 runs the same round on a CPU, as a smoke test of the command.
set -eu
out=${OUT:-runs/sr_gpu}
minutes=${MINUTES:-7}
device=${DEVICE:-cuda}
workers=${WORKERS:-$(($(nproc) > 2 ? $(nproc) - 2 : 1))}
python -m editmgt_core.train.superres --decoder-from editmgt_core/assets/default-model/vqvae --out "$out/train" \
    --device "$device" --workers "$workers" --batch "${BATCH:-128}" --trunk-width 256 --trunk-codes --lr 1e-3 \
    --minutes "$minutes" --eval-images "${EVAL_IMAGES:-512}" --ckpt-every 500 --log-every 100 --threads 2
if [ "${N:-300}" -gt 0 ]; then
    python -m editmgt_core.evaluation.decoder_compare --decoders round="$out/train/vqvae" --world-seed 555 \
        --n "${N:-300}" --out "$out/compare" --quiet --threads 2 --device "$device"
fi
