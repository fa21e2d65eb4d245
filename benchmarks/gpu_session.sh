#!/usr/bin/env bash
# The GPU checks of the open issues for the lent GPU machine (../shared/GPU.md explains the machine), in as few
# device calls as its transfer limit (64 MiB a call) allows, with the training benchmark running while the rest
# arrives. Prepare here first: bash benchmarks/gpu_session.sh prepare  (writes the git-ignored .device/:
# .device/whl/*.whl, the pure-Python wheels the image lacks; .device/part.0 … part.4, mesonet-deepfake then
# onnxruntime-gpu 1.31.1 in five parts; .device/manifest, their sizes). Then one device call each, in a row:
#   bash benchmarks/gpu_session.sh part 0     carry .device/part.0 .device/manifest .device/whl: unpacks the data,
#                                             installs dfx, starts the training benchmark in the background; the
#                                             call itself then returns only at its timeout_s (the device tool waits
#                                             for the background job; seen 2026-12-01): give it 240, which the
#                                             benchmark uses anyway
#   bash benchmarks/gpu_session.sh part N     N = 1 … 3, carry .device/part.N
#   bash benchmarks/gpu_session.sh finish     carry .device/part.4 .device/manifest: installs onnxruntime-gpu,
#                                             waits for the training benchmark, runs the GPU-marked tests, the
#                                             whole suite and the pipeline benchmark; results land in $OUT
set -euo pipefail
R=/tmp/gpu-results
ORT=onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl

prepare() {
  mkdir -p .device/whl /tmp/ortg
  python3 -m pip download -q --no-deps -d .device/whl onnxconverter-common onnxslim
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 -d /tmp/ortg onnxruntime-gpu==1.31.1
  tar -cf /tmp/meso.tar -C ../shared/data mesonet-deepfake
  local data wheel
  data=$(stat -c %s /tmp/meso.tar) wheel=$(stat -c %s "/tmp/ortg/$ORT")
  rm -f .device/part.*
  cat /tmp/meso.tar "/tmp/ortg/$ORT" | split -b $(((data + wheel) / 5 + 1)) -d -a 1 - .device/part.
  printf 'DATA_BYTES=%s\nWHEEL_BYTES=%s\n' "$data" "$wheel" > .device/manifest
  ls -l .device
}

use_site() { export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} PATH=/tmp/site/bin:$PATH; }

part() {
  mkdir -p /tmp/parts "$R"
  cp ".device/part.$1" /tmp/parts/
  [ "$1" = 0 ] || return 0
  source .device/manifest
  mkdir -p /tmp/data && head -c "$DATA_BYTES" /tmp/parts/part.0 | tar -x -C /tmp/data
  python3 -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/site .device/whl/*.whl .
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$R/gpu.txt"
  rm -rf /tmp/t && mkdir -p /tmp/t && cp -r tests pyproject.toml /tmp/t/  # outside the checkout (GPU.md)
  # from a copy in /tmp: the next call replaces the checkout under a script bash is still reading
  cp benchmarks/gpu_session.sh /tmp/gpu_session.sh
  (cd /tmp && setsid nohup bash /tmp/gpu_session.sh train > "$R/train.log" 2>&1 < /dev/null &)
}

train() {  # the training benchmark (#14) alone on the machine: nothing else measures meanwhile
  use_site
  local d=/tmp/data/mesonet-deepfake
  python3 -m dfx.benchmarks.train_throughput --data $d --device cuda --workers 12 --batch-size 256 --steps 60 \
    --repeat 3 --models meso4,mesoinception4,efficientnet_b0,xception,vit_b16 \
    --variants ram/device,none/workers --out "$R/train-gpu" || true
  python3 -m dfx.benchmarks.train_throughput --data $d --device cuda --workers 12 --batch-size 256 --steps 60 \
    --repeat 3 --models meso4 --variants ram/device,ram/device/noaug,ram/device/det,ram/device/compile --feed \
    --out "$R/train-gpu-options" || true
  touch "$R/train.done"
}

finish() {
  local end=$((SECONDS + ${BUDGET_S:-540}))
  source .device/manifest
  cp .device/part.4 /tmp/parts/
  cat /tmp/parts/part.? | tail -c +$((DATA_BYTES + 1)) > "/tmp/$ORT"
  [ "$(stat -c %s "/tmp/$ORT")" = "$WHEEL_BYTES" ] || { echo "the onnxruntime-gpu wheel arrived incomplete"; exit 1; }
  [ -d /tmp/ortgpu ] || python3 -m pip install -q --no-deps --target /tmp/ortgpu "/tmp/$ORT"
  use_site
  local nv
  nv=$(python3 -c "import nvidia, os; print(os.path.dirname(nvidia.__path__[0]))")/nvidia
  export PYTHONPATH=/tmp/ortgpu:$PYTHONPATH LD_LIBRARY_PATH=$(ls -d "$nv"/*/lib | tr '\n' ':')${LD_LIBRARY_PATH:-}
  python3 -c "import onnxruntime as o; print(o.__version__, o.get_available_providers())" | tee "$R/ort.txt"
  while [ ! -e "$R/train.done" ] && [ $SECONDS -lt $((end - 300)) ]; do sleep 2; done
  [ -e "$R/train.done" ] || echo "training benchmark still running; its partial results follow" | tee -a "$R/train.log"
  # tests/test_docs.py and tests/test_packaging.py read the source tree, which the copy leaves out (GPU.md)
  local skip=(--ignore tests/test_docs.py --ignore tests/test_packaging.py)
  (cd /tmp/t && timeout 120 pytest -q -m gpu -rs "${skip[@]}" 2>&1) > "$R/tests-gpu.txt" || true
  tail -3 "$R/tests-gpu.txt"
  # the whole suite in four processes, then what failed once more alone (to tell parallelism from real faults)
  (cd /tmp/t && timeout $((end - SECONDS - 100)) pytest -q -m "not slow" -n 4 "${skip[@]}" 2>&1) \
    > "$R/tests-all.txt" || (cd /tmp/t && timeout 60 pytest -q --lf -m "not slow" "${skip[@]}" 2>&1 | tail -30) \
    >> "$R/tests-all.txt" || true
  tail -3 "$R/tests-all.txt"
  local left=$((end - SECONDS - 10))
  if [ $left -gt 40 ]; then  # from /tmp: in the checkout its dfx/ folder hides the installed package
    cd /tmp && timeout $left python3 -m dfx.benchmarks.pipeline_throughput --data /tmp/data/mesonet-deepfake/validate \
      --backend onnxruntime-cuda --threads 16 --batch-size 256 --large 1024 --rounds 3 \
      --models meso4,efficientnet_b0 --out "$R/pipeline-gpu" > "$R/pipeline-gpu.log" 2>&1 || true
  fi
  tar -cf "${OUT:-$OLDPWD}/gpu-results.tar" -C "$R" .  # one file: at most 8 come back
  tail -15 "$R/train.log"
}

"${1:?usage: gpu_session.sh prepare | part N | train | finish}" "${@:2}"
