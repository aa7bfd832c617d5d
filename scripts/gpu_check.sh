#!/usr/bin/env bash
# The GPU check (about 8 minutes on one GPU): the CUDA-only tests, every benchmark on the GPU, and the
# time to accuracy of the fastest CIFAR-shaped preset on generated images (no dataset files needed).
# Run it from the repository root on a machine with CUDA: bash scripts/gpu_check.sh [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-check}"
mkdir -p "$out"
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: this check needs a GPU')" || exit 1
python -c "import torch; print('device:', torch.cuda.get_device_name(0), '· torch', torch.__version__)" | tee "$out/device.txt"

rc=0
echo "== CUDA-only tests"
timeout 120 python -m pytest -q -p no:cacheprovider -m "not browser and not slow" -k "cuda" -rs tests/test_cuda.py tests/test_sram.py 2>&1 | tee "$out/tests.txt" || rc=1

echo "== benchmarks on the GPU (ratios measured side by side)"
(cd benchmarks && timeout 300 python run_all.py --device cuda) 2>&1 | tee "$out/benchmarks.txt" || rc=1

echo "== time to accuracy: vgg13-cifar10 on 10000 generated CIFAR-shaped images"
(cd benchmarks && timeout 150 python bench_time_to_accuracy.py --device cuda --preset vgg13-cifar10 --generated 10000 \
    --target 0.9 --max-epochs 15) 2>&1 | tee "$out/time_to_accuracy.txt" || rc=1
exit "$rc"
