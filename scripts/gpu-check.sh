#!/usr/bin/env bash
# End-to-end check of the GPU path on a machine with an NVIDIA GPU and driver (npm run gpu-check):
#   1. the driver is there (nvidia-smi, libcuda.so.1);
#   2. `npm run setup -- --gpu` installs tfjs-node-gpu on PyPI's tensorflow==2.9.1 wheel and the
#      CUDA 11 / cuDNN 8 wheels (scripts/ensure-tfjs-node.sh --gpu);
#   3. ops run on the GPU, not the CPU fallback: the backend reports a GPU device, and a 4096^3
#      matMul runs faster than this machine's CPU could (its measured rate is printed);
#   4. the TTT numerics tests (native-ttt: finite differences, dual vs primal, five stage lengths,
#      remat), the tensorflow/wasm parity test and bit-exact resume run there;
#   5. `npm run bench -- model` runs there and its tables are printed.
# Exits non-zero at the first step that fails, saying which.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
say() { echo "gpu-check: $*"; }
die() { echo "gpu-check: FAILED: $*" >&2; exit 1; }

say "1/5 NVIDIA driver"
command -v nvidia-smi >/dev/null || die "nvidia-smi not found: this machine has no NVIDIA driver"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || die "nvidia-smi cannot talk to the driver"
ldconfig -p | grep -q 'libcuda.so.1' || [[ -e /usr/lib/x86_64-linux-gnu/libcuda.so.1 ]] || die "libcuda.so.1 (the driver's CUDA library) is not on the loader path"

say "2/5 setup --gpu (tfjs-node-gpu, tensorflow==2.9.1 and CUDA 11 / cuDNN 8 wheels from PyPI)"
bash scripts/setup.sh --gpu
env_sh=.tools/tfjs-native/gpu/env.sh
[[ -f $env_sh ]] || die "setup --gpu did not install the GPU backend (see the line above and .tools/tfjs-native/install-gpu.log)"
# shellcheck disable=SC1090
source "$env_sh"
export TTT_REQUIRE_NATIVE=1

say "3/5 ops on the GPU"
node -e "
  const { initBackend, describeBackend, tf } = require('./dist/src/backend');
  (async () => {
    await initBackend('tensorflow');
    const info = describeBackend();
    console.log('backend:', info.name, '|', info.deviceText, '|', info.package);
    if (info.device !== 'gpu') { console.error('tensorflow runs on the CPU: the CUDA libraries did not load (TF_CPP_MIN_LOG_LEVEL=0 shows why)'); process.exit(1); }
    const a = tf.randomNormal([4096, 4096]);
    tf.matMul(a, a).dataSync();
    let best = Infinity;
    for (let i = 0; i < 5; i++) { const t = process.hrtime.bigint(); tf.matMul(a, a).dataSync(); best = Math.min(best, Number(process.hrtime.bigint() - t) / 1e9); }
    const g = 2 * 4096 ** 3 / best / 1e9;
    console.log('matMul 4096^3:', g.toFixed(0), 'GFLOP/s');
    const { cpuPeak } = require('./dist/bench/native');
    const p = cpuPeak();
    console.log('this CPU peak:', (p.flops / 1e9).toFixed(0), 'GFLOP/s');
    if (g * 1e9 < 2 * p.flops) { console.error('matMul is not faster than the CPU could be: not on the GPU'); process.exit(1); }
  })();
" || die "ops do not run on the GPU"

say "4/5 numerics on the GPU (native-ttt, parity, bit-exact resume)"
node --test --test-concurrency=1 dist/test/unit/native-ttt.test.js dist/test/unit/native-parity.test.js dist/test/unit/native-resume.test.js ||
  die "numerics tests failed on the GPU (bit-exact resume may not hold on GPU kernels: see the README)"

say "5/5 model benchmark on the GPU"
node dist/bench/run.js model || die "the model benchmark failed"
say "all checks passed"
