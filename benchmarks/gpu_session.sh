#!/usr/bin/env bash
# The GPU checks of the open issues, sized for a lent GPU machine's budget (15 minutes of device time a session,
# start-up included; each call carries at most 64 MiB and returns files of at most 16 MiB; the machine is released
# after 30 s without a call, taking /tmp with it). ../shared/GPU.md explains the machine. Prepare here first:
#   bash benchmarks/gpu_session.sh prepare
# which writes the git-ignored .device/: whl/ (the pure-Python wheels the image lacks, with which dfx installs),
# meso/ (mesonet-deepfake, 38 MB) and others/ (stylegan2-ffhq and ciplab-photoshop, 44 MB). Then one device call
# per phase, each issued as soon as the one before returns, in priority order (timeout_s 270 each):
#   one    carry .device/whl .device/meso     GPU-marked tests; the training benchmark of "dfx-train at GPU
#                                             speed" for all five models
#   two    carry .device/whl .device/others   leave-one-source-out of efficientnet_b0 at GPU length, seed 0
#                                             ("Detectors that generalise"; Meso-4's table over seeds is the
#                                             CPU one in the README)
#   three  carry .device/whl                  only with 5 minutes of device time left: efficientnet_b0 on all
#                                             three sources, exported to FP16 and compared with the bundled model;
#                                             Meso-4's leave-one-out on this GPU; the whole test suite
# Every phase sets itself up when the machine is fresh (a phase that finds a data set missing says so and skips
# what needs it), keeps within BUDGET_S seconds (default 240), and returns one tar of its results in $OUT even
# when a step fails or runs out of time. DRY=1 runs the same plumbing on this machine's CPU with tiny workloads
# (tests/benchmarks/test_gpu_session.py).
set -uo pipefail
shopt -s nullglob
T=${GPU_SESSION_TMP:-/tmp}  # where the session installs, unpacks and trains
R=$T/gpu-results
PY=${PYTHON:-python3}
DRY=${DRY:-0}
END=$((SECONDS + ${BUDGET_S:-240}))

prepare() {
  rm -rf .device && mkdir -p .device/whl .device/meso .device/others
  python3 -m pip download -q --no-deps -d .device/whl onnxconverter-common onnxslim || exit 1
  tar -cf .device/meso/data.tar -C ../shared/data mesonet-deepfake
  tar -cf .device/others/data.tar -C ../shared/data stylegan2-ffhq ciplab-photoshop
  du -sh .device/*
}

left() { echo $((END - SECONDS)); }

step() {  # step NAME SECONDS 'COMMAND': runs COMMAND within min(SECONDS, what is left), logs its time and status
  local name=$1 want=$2 t0=$SECONDS rc limit
  limit=$(($(left) - 15))
  [ "$limit" -gt "$want" ] && limit=$want
  if [ "$limit" -lt 20 ]; then
    echo "$name: skipped, ${limit}s left" | tee -a "$R/steps.txt"
    return 0
  fi
  timeout "$limit" bash -c "$3" > "$R/$name.log" 2>&1
  rc=$?
  echo "$name: rc $rc, $((SECONDS - t0)) s (limit $limit)" | tee -a "$R/steps.txt"
  tail -4 "$R/$name.log"
}

setup() {  # installs dfx once per machine, unpacks the data carried by this call
  mkdir -p $T/data
  for tarball in .device/*/data.tar; do [ -e "$tarball" ] && tar -xf "$tarball" -C $T/data; done
  if [ ! -d $T/site/dfx ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --target $T/site .device/whl/*.whl . \
      > "$R/install.log" 2>&1 || { echo "dfx did not install" | tee -a "$R/steps.txt"; return 1; }
  fi
  # Tests and modules run from /tmp: in the checkout its dfx/ folder would hide the installed package (GPU.md).
  rm -rf $T/t && mkdir -p $T/t && cp -r tests pyproject.toml $T/t/
  export PYTHONPATH=$T/site${PYTHONPATH:+:$PYTHONPATH} PATH=$T/site/bin:$PATH
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$R/gpu.txt" 2>&1
  (cd $T && "$PY" -c "import dfx, torch; print('dfx', dfx.__version__, 'torch', torch.__version__,
      'cuda', torch.cuda.is_available())") 2>&1 | tee "$R/versions.txt"
  ls $T/data | tee "$R/data.txt"
}

collect() {  # one tar: at most 8 files come back
  local dest=${OUT:-$T/gpu-out}
  mkdir -p "$dest" && tar -cf "$dest/gpu-$PHASE.tar" -C "$R" . && echo "results: $dest/gpu-$PHASE.tar"
}

have() { for s in "$@"; do [ -d "$T/data/$s/train" ] || return 1; done; }

# Workloads: the real ones, or tiny ones for the dry run on a CPU.
# BATCH is the training benchmark's (its ceiling is measured at the same size); FIT_BATCH and EPOCHS are those of
# the models trained for accuracy: from scratch, efficientnet_b0 needs steps as well as epochs (on mesonet-deepfake
# alone 12 epochs of 32 reached 0.987 on 2026-11-26), and 128 gives 700–1,300 steps a run within the budget.
if [ "$DRY" = 1 ]; then
  DEV=cpu WORKERS=2 BATCH=16 FIT_BATCH=16 STEPS=2 REPEAT=1 MODELS=meso4 EPOCHS=1 CAP="--max-steps-per-epoch 2"
else
  DEV=cuda WORKERS=12 BATCH=256 FIT_BATCH=128 STEPS=60 REPEAT=3 EPOCHS=${EPOCHS:-16} CAP=""
  MODELS=meso4,mesoinception4,efficientnet_b0,xception,vit_b16
fi
SETS="$T/data/mesonet-deepfake $T/data/stylegan2-ffhq $T/data/ciplab-photoshop"

loso() {  # 'COMMAND' for leave-one-source-out of MODEL, seed 0, over the folds whose training sets are here
  local model=$1 epochs=$2 batch=${3:+--batch-size $3} held=""
  have stylegan2-ffhq ciplab-photoshop && held+=" mesonet-deepfake"
  have mesonet-deepfake ciplab-photoshop && held+=" stylegan2-ffhq"
  have mesonet-deepfake stylegan2-ffhq && held+=" ciplab-photoshop"
  local sets=""
  for s in $SETS; do [ -d "$s/validate" ] && sets+=" $s"; done
  [ -n "$held" ] || { echo "echo no fold has its training sets here; exit 1"; return; }
  echo "cd $T && $PY -m dfx.benchmarks.leave_one_out --data$sets --held-out$held --model $model \
    --epochs $epochs --workers $WORKERS $batch $CAP --runs $T/runs/loso-$model --out $R/loso-$model-gpu"
}

one() {  # the issue's GPU target first, then the tests, then what places Meso-4's gap
  local bench="cd $T && $PY -m dfx.benchmarks.train_throughput --data $T/data/mesonet-deepfake --device $DEV \
    --workers $WORKERS --batch-size $BATCH --steps $STEPS --repeat $REPEAT"
  if have mesonet-deepfake; then
    for m in ${MODELS//,/ }; do  # one step each: a model that runs out of time leaves the others' results
      step "train-gpu-$m" 40 "$bench --models $m --variants ram/device --out $R/train-gpu-$m"
    done
  else
    echo "train-gpu: skipped, mesonet-deepfake is not here (carry .device/meso)" | tee -a "$R/steps.txt"
  fi
  step tests-gpu 60 "cd $T/t && pytest -q -m gpu -rs --ignore tests/test_docs.py --ignore tests/test_packaging.py"
  have mesonet-deepfake && step train-gpu-meso4-options 45 "$bench --models meso4 \
    --variants ram/device,ram/device/noaug --feed --out $R/train-gpu-meso4-options"
}

two() {
  step loso-efficientnet_b0 215 "$(loso efficientnet_b0 "$EPOCHS" "$FIT_BATCH")"
}

three() {
  if have mesonet-deepfake stylegan2-ffhq ciplab-photoshop; then
    local run=$T/runs/effb0-all data=""
    for s in $SETS; do data+=" --data $s"; done
    step candidate-train 100 "cd $T && dfx-train efficientnet_b0$data --no-pretrained --epochs $EPOCHS \
      --batch-size $FIT_BATCH --workers $WORKERS $CAP --out $run --overwrite"
    # What comes back must stay under 16 MiB: the FP16 file, the run's records and the export's report.
    step candidate-export 40 "cd $T && dfx-export --checkpoint $run/best.safetensors --fp16 --no-engine \
      --out $T/candidate && mkdir -p $R/candidate && cp $T/candidate/*.fp16.onnx $T/candidate/*.export.json \
      $run/MODEL_CARD.md $run/metrics.jsonl $run/best.json $run/config.json $R/candidate/"
    step candidate-compare 40 "cd $T && $PY -m dfx.benchmarks.model_comparison --models bundled \
      accurate=\$(ls $T/candidate/*.fp16.onnx) --data $SETS --faces off --out $R/candidate-comparison"
  else
    echo "candidate: skipped, the three data sets are not all here (phases one and two carry them)" \
      | tee -a "$R/steps.txt"
  fi
  step loso-meso4 50 "$(loso meso4 10)"
  local n=""
  (cd $T && "$PY" -c "import xdist") 2>/dev/null && n="-n 8"
  step tests-all 400 "cd $T/t && pytest -q -m 'not slow' $n --ignore tests/test_docs.py \
    --ignore tests/test_packaging.py"
}

PHASE=${1:?usage: gpu_session.sh prepare | one | two | three}
case $PHASE in
  prepare) prepare ;;
  one|two|three)
    rm -rf "$R" && mkdir -p "$R"
    trap collect EXIT
    setup || exit 1
    "$PHASE"
    cat "$R/steps.txt" ;;
  *) echo "unknown phase $PHASE; valid: prepare, one, two, three" >&2; exit 2 ;;
esac
