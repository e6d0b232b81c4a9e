#!/usr/bin/env bash
# Everything genaccel checks on a GPU, as ONE device call (the device machine has torch, Triton,
# transformers, accelerate and torchmetrics, but not diffusers: it travels as a wheel in .whl/).
#
# Prepare here, once:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps -d .whl diffusers==0.42.1 huggingface_hub==1.33.0
# Then call the device tool's run with: command="bash benchmarks/gpu_session.sh", carry=[".whl"],
# timeout_s=560. Results (logs and a BENCHMARKS.md with the GPU sections) come back under $OUT;
# copy the sections into BENCHMARKS.md and commit them.
set -uo pipefail
out="${OUT:-/tmp/genaccel-gpu}"
mkdir -p "$out"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$PWD"
else
  export PYTHONPATH="$PWD"
fi
export PYTHONUNBUFFERED=1
cp BENCHMARKS.md "$out/BENCHMARKS.md"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/device.txt"
python3 -c "import torch, triton, transformers, diffusers; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__, 'diffusers', diffusers.__version__)" | tee -a "$out/device.txt"

# 1. correctness on CUDA (about 2 minutes): every backend vs reference, the Triton kernel, compiled models
timeout 180 python3 -m pytest -q -x -p no:cacheprovider tests/gpu tests/attention/test_triton_kernel.py \
  2>&1 | tee "$out/tests.log"
# 2. op-level table (1k-64k tokens, bf16) and 3. the transformer step at users' sizes (within 8 minutes)
timeout 90 python3 benchmarks/attention.py --write "$out/BENCHMARKS.md" 2>&1 | tee "$out/attention.log"
timeout 300 python3 benchmarks/transformer_step.py --write "$out/BENCHMARKS.md" 2>&1 | tee "$out/transformer_step.log"
