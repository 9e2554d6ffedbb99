#!/usr/bin/env bash
# The prepared GPU check of issue 16 for a lent GPU machine (the `device` tool): serves a model
# (default models/sprout-tiny) through the runtime and the node's batching scheduler on a GPU
# execution provider, beside the CPU, and prints tokens per forward and tokens/s with 1 and 8
# requests at a time, the cost of one step against its tokens, and whether the GPU's greedy text
# equals the CPU's (bench/gpu.ts); the JSON goes to $OUT/gpu.json (here: bench/results/gpu.json).
#
# The device machine has no Node.js, no node_modules and no network, and a call carries at most
# 64 MiB with the working tree (~43 MB of it). Node (stripped) and onnxruntime-node's Linux x64
# binaries come to ~35 MB xz-compressed, so they travel in two halves, one per call, on a machine
# kept warm between the two (it stays warm 30 s after a call: make the second call at once):
#
#   1. here:    bench/gpu.sh pack              builds .gpu/a and .gpu/b (ignored by git)
#   2. device:  run(command="bash bench/gpu.sh stage", carry=[".gpu/a"], timeout_s=120)
#   3. device:  run(command="bash bench/gpu.sh", carry=[".gpu/b"], timeout_s=600)   (~2–4 min)
#
# Step 3 alone, on a fresh machine, stops at once saying step 2 is missing. Here (node and
# node_modules present) `bench/gpu.sh` runs bench/gpu.ts with tsx directly; GPU_BENCH_ALLOW_CPU=1
# lets it measure the CPU alone when no GPU provider starts (the proof that the script works).
#
# The GPU provider: cuda when onnxruntime-node's CUDA provider is installed (the CUDA image,
# apps/denoiser/Dockerfile with --build-arg EP=cuda12), else webgpu (Dawn on Vulkan: the Vulkan
# loader is unpacked from the carried .debs when the machine lacks it, and NVIDIA's ICD is named
# when no other is registered). When neither starts, it stops with the provider's one-line reason
# (models/src/providers.ts) and exit status 3.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
mode=${1:-run}
stage=${GPU_STAGE_DIR:-/tmp/sprout-gpu}
say() { echo "gpu.sh: $*" >&2; }

pack() {
  local root=.gpu/root
  rm -rf .gpu && mkdir -p "$root/bin" "$root/node_modules" "$root/debs" .gpu/a .gpu/b
  strip -o "$root/bin/node" "$(command -v node)"
  # The measurement and the runtime it imports, in one file; onnxruntime-node stays a package.
  node_modules/.bin/esbuild bench/gpu.ts --bundle --platform=node --format=esm --target=node20 \
    --external:onnxruntime-node --outfile="$root/gpu.mjs" --log-level=warning \
    --banner:js="import { createRequire as __sproutRequire } from 'node:module'; const require = __sproutRequire(import.meta.url);"
  cp models/src/pick.onnx "$root/"
  local ort=node_modules/onnxruntime-node
  mkdir -p "$root/$ort/bin/napi-v6/linux"
  cp -r "$ort/package.json" "$ort/dist" "$root/$ort/"
  cp -r "$ort/bin/napi-v6/linux/x64" "$root/$ort/bin/napi-v6/linux/"
  cp -r node_modules/onnxruntime-common "$root/node_modules/"
  # The Vulkan loader and GL vendor libraries NVIDIA's Vulkan driver needs (the device README's list).
  local o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/sprout-gpu-apt)
  mkdir -p /tmp/sprout-gpu-apt/partial
  apt-get "${o[@]}" update >/dev/null
  (cd "$root/debs" && apt-get "${o[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null)
  tar -C .gpu -cf - root | xz -T2 -9e > .gpu/runtime.tar.xz
  local size half
  size=$(stat -c %s .gpu/runtime.tar.xz)
  half=$(((size + 1) / 2))
  head -c "$half" .gpu/runtime.tar.xz > .gpu/a/runtime.tar.xz.1
  tail -c +"$((half + 1))" .gpu/runtime.tar.xz > .gpu/b/runtime.tar.xz.2
  rm -rf "$root" .gpu/runtime.tar.xz
  du -b .gpu/a/* .gpu/b/*
  say "packed: carry .gpu/a in the first call (bench/gpu.sh stage), .gpu/b in the second (bench/gpu.sh)"
}

stage_a() {
  [[ -f .gpu/a/runtime.tar.xz.1 ]] || { say "no .gpu/a here: run bench/gpu.sh pack, then carry .gpu/a"; exit 2; }
  mkdir -p "$stage" && cp .gpu/a/runtime.tar.xz.1 "$stage/"
  say "staged the first half in $stage; now run: bash bench/gpu.sh (carry .gpu/b), within 30 s"
}

# Where node and onnxruntime-node come from: this checkout's, or the carried runtime.
runtime() {
  if [[ -z ${GPU_BENCH_CARRIED:-} ]] && command -v node >/dev/null && [[ -d node_modules/onnxruntime-node && -x node_modules/.bin/tsx ]]; then
    NODE=(node --import tsx)
    BENCH=bench/gpu.ts
    ORT_DIR=node_modules/onnxruntime-node
    return
  fi
  if [[ ! -x $stage/root/bin/node ]]; then
    [[ -f .gpu/b/runtime.tar.xz.2 ]] || { say "no carried runtime: run bench/gpu.sh pack here, then the two calls (see the top of bench/gpu.sh)"; exit 2; }
    [[ -f $stage/runtime.tar.xz.1 ]] || { say "the first half is not on this machine ($stage): call 'bash bench/gpu.sh stage' with carry .gpu/a first, then this one at once"; exit 2; }
    cat "$stage/runtime.tar.xz.1" .gpu/b/runtime.tar.xz.2 | xz -d | tar -C "$stage" -xf -
  fi
  NODE=("$stage/root/bin/node")
  BENCH=$stage/root/gpu.mjs
  ORT_DIR=$stage/root/node_modules/onnxruntime-node
}

vulkan() {
  if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1 '; then
    if compgen -G "$stage/root/debs/*.deb" >/dev/null; then
      say "no Vulkan loader here: unpacking the carried libvulkan1 and GL vendor libraries"
      for f in "$stage"/root/debs/*.deb; do dpkg -x "$f" /; done
      ldconfig
    fi
  fi
  local nvidia=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  if [[ -z ${VK_DRIVER_FILES:-} && -f $nvidia ]] && ! compgen -G "/usr/share/vulkan/icd.d/nvidia*.json" >/dev/null && ! compgen -G "/etc/vulkan/icd.d/nvidia*.json" >/dev/null; then
    export VK_DRIVER_FILES=$nvidia
    [[ -f /usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json ]] && export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  fi
  export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
}

run() {
  runtime
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  local provider=${GPU_PROVIDER:-}
  if [[ -z $provider ]]; then
    if [[ -f $ORT_DIR/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so ]]; then provider=cuda; else provider=webgpu; fi
  fi
  [[ $provider == webgpu ]] && vulkan
  local out=${OUT:-$repo/bench/results}
  mkdir -p "$out"
  export BENCH_MODEL_DIR=${BENCH_MODEL_DIR:-$repo/models/sprout-tiny}
  export BENCH_OUT=$out/gpu.json
  say "provider $provider, model $BENCH_MODEL_DIR, ${NODE[*]} $BENCH"
  export GPU_PROVIDER=$provider
  set +e
  GPU_BENCH_CHECK_ONLY=1 "${NODE[@]}" "$BENCH" 2>"$out/gpu-check.log"
  local status=$?
  set -e
  if [[ $status -ne 0 ]]; then
    tail -n 1 "$out/gpu-check.log" >&2
    if [[ -z ${GPU_BENCH_ALLOW_CPU:-} ]]; then
      say "no GPU provider works here (set GPU_BENCH_ALLOW_CPU=1 to measure the CPU alone)"
      exit 3
    fi
    say "GPU_BENCH_ALLOW_CPU=1: measuring the CPU alone"
    export GPU_PROVIDER=none
  fi
  set -o pipefail
  "${NODE[@]}" "$BENCH" 2>&1 | grep -v -e 'W:onnxruntime' -e 'artificially reduced' | tee "$out/gpu.log"
}

case $mode in
  pack) pack ;;
  stage) stage_a ;;
  run) run ;;
  *) say "usage: bench/gpu.sh [pack|stage|run]"; exit 2 ;;
esac
