#!/usr/bin/env bash
# A short plan for a machine with one GPU, in two calls from the repository root:
#
#   tools/gpu_plan.sh smoke              # wheels, the CUDA tests and a quick CUDA benchmark (~3 min)
#   tools/gpu_plan.sh train MINUTES      # three lambdas trained in parallel on the one GPU, then released
#
# Before the first call: where the GPU machine has no package index, put the requirements'
# wheels in .whl/ (pip download -r requirements.txt -d .whl; smoke installs them), and run
# tools/gpu_plan.sh data (copies BSDS500's training photographs to data/, which git ignores);
# copy .whl and data along with the checkout.  Everything to keep is written under $OUT
# (release files of at most 8 MB, logs, the benchmark's JSON).
#
# Rehearse on the CPU: BATCH=4 PY=.venv/bin/python OUT=out/rehearsal tools/gpu_plan.sh train 1 --cpu
# (one minute, the same commands without --cuda; three batch-16 trainings do not fit 24 GB of RAM)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out}
mkdir -p "$OUT"
PY=${PY:-python3}
BATCH=${BATCH:-16}  # three trainings at once: 16 crops of 256x256 each fit a GPU; rehearse the CPU with BATCH=4
LAMBDAS=(0.0035 0.013 0.05)

install_wheels() {
  if ls .whl/*.whl >/dev/null 2>&1 && ! "$PY" -c "import compressai" 2>/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
  fi
}

case "${1:-}" in
  data)
    mkdir -p data/bsds500/train data/bsds500/test
    cp ../shared/data/bsds500/train/*.jpg data/bsds500/train/
    cp ../shared/data/bsds500/test/*.jpg data/bsds500/test/
    grep -qx '/data/' .git/info/exclude 2>/dev/null || echo '/data/' >> .git/info/exclude
    du -sh data
    ;;
  smoke)
    install_wheels
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
    make gpu-check PY="$PY" STAMP= 2>&1 | tee "$OUT/gpu-check.log"
    ;;
  train)
    minutes=${2:?minutes}
    device=(--cuda --amp bf16)
    [ "${3:-}" = "--cpu" ] && device=(-n 0)
    install_wheels
    start=$(date +%s)
    # The shipped demo configuration (N=32: release files of 7.7 MB), fine-tuned from the shipped
    # lambda-0.013 model; most of the budget at 1e-4, the rest at 1e-5 (a resume with a new -lr).
    base=$(ls pretrained/tcm-demo-mse-0.013-*.pth.tar)
    first=$(awk "BEGIN{print $minutes * 0.75}")
    second=$(awk "BEGIN{print $minutes * 0.2}")
    common=(-d data/bsds500 --patch-size 256 256 --batch-size "$BATCH" --test-batch-size 8 --max-test-images 16
            --epochs 100000 --lr_epoch 100000 --save-every 0 --image-every 0 --no-progress --save_path "$OUT/runs")
    for lam in "${LAMBDAS[@]}"; do
      "$PY" train.py "${common[@]}" "${device[@]}" --pretrained "$base" --lambda "$lam" -lr 1e-4 \
          --max-minutes "$first" > "$OUT/train-$lam.log" 2>&1 &
    done
    wait
    for lam in "${LAMBDAS[@]}"; do
      "$PY" train.py "${common[@]}" "${device[@]}" --checkpoint "$OUT/runs/mse_lambda_$lam/checkpoint_latest.pth.tar" \
          -lr 1e-5 --max-minutes "$second" >> "$OUT/train-$lam.log" 2>&1 &
    done
    wait
    for lam in "${LAMBDAS[@]}"; do
      run="$OUT/runs/mse_lambda_$lam"
      ck="$run/checkpoint_best.pth.tar"; [ -f "$ck" ] || ck="$run/checkpoint_latest.pth.tar"  # no epoch ended
      "$PY" updates.py "$ck" -o "$OUT" -n "tcm-demo-mse-$lam" --half
    done
    rm -rf "$OUT/runs"  # training checkpoints are ~50 MB each: the release files are what comes back
    echo "train: $(( $(date +%s) - start )) s"
    ls -la "$OUT"
    ;;
  *)
    sed -n '2,14p' "$0"; exit 2 ;;
esac
