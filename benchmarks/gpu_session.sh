#!/usr/bin/env bash
# The GPU checks of the open issues as one command for the lent GPU machine (../shared/GPU.md explains the
# machine). Prepare on the development machine first (these paths are git-ignored through .git/info/exclude):
#   .device/whl/*.whl        pure-Python wheels the GPU image lacks (pip download --no-deps onnxconverter-common
#                            onnxslim)
#   .device/ortw.0 … .4      onnxruntime-gpu 1.31.1 for Python 3.12, split in five parts (GPU.md); send them in
#                            earlier commands first: the transfer limit is 64 MiB a command
#   .device/meso.tar         tar -cf .device/meso.tar -C ../shared/data mesonet-deepfake
# Then, on the GPU machine: bash benchmarks/gpu_session.sh   (results land in $OUT, or ./gpu-results)
# Steps: install dfx and onnxruntime-gpu under /tmp, run the GPU-marked tests and the whole suite against a copy of
# tests/, then the pipeline benchmark (all five models, 256-px and 1024-px decoding) and the training benchmark.
set -euo pipefail
OUT=${OUT:-gpu-results}
mkdir -p "$OUT" /tmp/data
python3 -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/site .device/whl/*.whl .
export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH
if [ ! -d /tmp/ortgpu ]; then
  cat /tmp/ortw/ortw.? > /tmp/onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl
  python3 -m pip install -q --no-deps --target /tmp/ortgpu /tmp/onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl
fi
NV=$(python3 -c "import nvidia, os; print(os.path.dirname(nvidia.__path__[0]))")/nvidia
export PYTHONPATH=/tmp/ortgpu:$PYTHONPATH LD_LIBRARY_PATH=$(ls -d "$NV"/*/lib | tr '\n' ':')${LD_LIBRARY_PATH:-}
python3 -c "import onnxruntime as o; assert 'CUDAExecutionProvider' in o.get_available_providers(), o.get_available_providers()"
[ -d /tmp/data/mesonet-deepfake ] || tar -xf .device/meso.tar -C /tmp/data
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"

# Tests: a copy outside the checkout, so the installed package is the one imported (GPU.md).
rm -rf /tmp/t && mkdir -p /tmp/t && cp -r tests pyproject.toml /tmp/t/
(cd /tmp/t && pytest -q -m gpu -rs 2>&1 | tail -20) | tee "$OUT/tests-gpu.txt"
(cd /tmp/t && pytest -q -m "not slow" -x 2>&1 | tail -20) | tee "$OUT/tests-all.txt"

VAL=/tmp/data/mesonet-deepfake/validate
python3 -m dfx.benchmarks.pipeline_throughput --data "$VAL" --backend onnxruntime-cuda --threads 16 \
  --batch-size 256 --large 1024 --rounds 3 --out "$OUT/pipeline-gpu" 2>&1 | tee "$OUT/pipeline-gpu.log"
python3 -m dfx.benchmarks.train_throughput --data /tmp/data/mesonet-deepfake --device cuda --workers 12 \
  --batch-size 256 --models meso4,efficientnet_b0,xception,vit_b16 \
  --variants none/workers,ram/workers,ram/device,ram/device/compile --out "$OUT/train-gpu" 2>&1 | tee "$OUT/train-gpu.log"
