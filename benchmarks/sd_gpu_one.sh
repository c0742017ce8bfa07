#!/usr/bin/env bash
# Issue 20's measurements on ONE GPU, in calls of under 10 minutes (multi-GPU hosts are often not lent;
# benchmarks/sd_memory_gpu.sh runs the memory part on four):
#   bash benchmarks/sd_gpu_one.sh 1 RESULTS_DIR MAKE_RANDOM_SD_PY   # memory: fp32 step by source, 6 GiB path, 4 GiB step
#        (MEM_JOBS="peacock_cap6 bf16_step_cap4_async": the path and the 4 GiB step as a 4 GB card runs it)
#   bash benchmarks/sd_gpu_one.sh 2 RESULTS_DIR MAKE_RANDOM_SD_PY   # start to the second step; ours against PyTorch
#   bash benchmarks/sd_gpu_one.sh 3 RESULTS_DIR MAKE_RANDOM_SD_PY   # bits: the SD run twice with cuDNN attention
#        (the default, auto) and once with XLA's, 50 logged steps each, compared loss by loss (bits.txt); and once
#        without Triton GEMM fusions (times.txt: each run's compile time and pace); the step with the
#        configs' signed-distance surface (configs/surface.py) against the paper's density field (step_surface.json,
#        step_density.json)
# MAKE_RANDOM_SD_PY is ../shared/tools/make_random_sd.py (torch + diffusers): SD 2.1-base with random fp16 weights,
# written once per machine (~1 min). Each job's JSON and log land in RESULTS_DIR; a job past its limit is cut.
# Part 3 writes 12 files: on the lent machine (8 files come back) give it a folder under $OUT and tar that.
set -u
PART=${1:?usage: sd_gpu_one.sh 1|2 RESULTS_DIR MAKE_RANDOM_SD_PY}; R=${2:?results dir}; MAKER=${3:?make_random_sd.py}
mkdir -p "$R"
CKPT=/tmp/sd21_base_random
t0=$(date +%s)
[ -f "$CKPT/unet/diffusion_pytorch_model.safetensors" ] || python3 "$MAKER" "$CKPT" fp16 > "$R/make_random_sd.log" 2>&1
echo "checkpoint ready after $(( $(date +%s) - t0 )) s"
nvidia-smi -L
job() {  # job NAME LIMIT_S command...
  local name=$1 limit=$2; shift 2
  timeout "$limit" "$@" > "$R/$name.log" 2>&1
  echo "$name exit $? at $(date +%T)"
}
if [ "$PART" = 1 ]; then
  # The path's export writes a turntable, so its set-up checks for imageio-ffmpeg and an ffmpeg (checks.py). On
  # 2026-12-06 that check stopped the path before any step ("imageio-ffmpeg is not installed"), with the package on
  # PYTHONPATH: say here what this interpreter sees, and give it IMAGEIO_FFMPEG_EXE (a stub if there is no ffmpeg).
  python3 -c "import imageio_ffmpeg; print('imageio_ffmpeg', imageio_ffmpeg.__file__)" 2>&1 | tail -1
  if [ -z "${IMAGEIO_FFMPEG_EXE:-}" ] && ! command -v ffmpeg > /dev/null; then
    printf '#!/bin/sh\ncase "$*" in *-version*) echo "ffmpeg version 6.0-stub"; exit 0;; esac\nfor last; do :; done\ncat > /dev/null\n: > "$last"\n' > /tmp/ffmpeg_stub
    chmod +x /tmp/ffmpeg_stub; export IMAGEIO_FFMPEG_EXE=/tmp/ffmpeg_stub; echo "ffmpeg: a stub (the mp4 is empty)"
  fi
  MEM_JOBS=${MEM_JOBS:-fp32_det peacock_cap6 bf16_step_cap4 bf16_step_cap4_async}  # Which of them (a short call: the last three).
  case " $MEM_JOBS " in *" fp32_det "*)
    XLA_PYTHON_CLIENT_PREALLOCATE=false job fp32_det 170 python3 benchmarks/sd_step.py --model=$CKPT --dtype=float32 \
      --steps=20 --noparts --out="$R/fp32_det.json" ;; esac
  case " $MEM_JOBS " in *" peacock_cap6 "*)
    job peacock_cap6 220 python3 benchmarks/sd_memory_cap.py --model=$CKPT --cases=path --cap_gib=6 --timeout_s=210 \
      --out="$R/peacock_cap6.json" ;; esac
  case " $MEM_JOBS " in *" bf16_step_cap4 "*)
    job bf16_step_cap4 120 python3 benchmarks/sd_memory_cap.py --model=$CKPT --cases=step --step_cap_gib=4 \
      --timeout_s=110 --out="$R/bf16_step_cap4.json" ;; esac
  # The 4 GiB step as the README tells a 4 GB card's user to run it: remat and CUDA's async allocator (JAX's BFC
  # allocator fragments under this cap: out of memory with remat, peak 3.4 GB with cuda_async, H100 2026-12-07).
  case " $MEM_JOBS " in *" bf16_step_cap4_async "*)
    job bf16_step_cap4_async 120 python3 benchmarks/sd_memory_cap.py --model=$CKPT --cases=step --step_cap_gib=4 \
      --allocator=cuda_async --step_flag=--remat --timeout_s=110 --out="$R/bf16_step_cap4_async.json" ;; esac
elif [ "$PART" = 3 ]; then
  sd_run() {  # sd_run NAME [overrides...]: configs/peacock.py on the random checkpoint, 50 steps, every loss logged.
    local name=$1; shift
    job "bits_$name" 150 python3 -m dreamfusion_jax.main --config=configs/peacock.py --workdir="/tmp/sd_bits_$name" \
      --compilation_cache= --config.guidance.sd.model=$CKPT --config.num_steps=50 --config.log_every=1 \
      --config.val_every=0 --config.checkpoint_every=1000 --config.export.enabled=false --config.progress_bar=false ${SD_BITS_SET:-} "$@"
  }  # SD_BITS_SET: more overrides for all three (a CPU smoke test: a tiny checkpoint at 16x16).
  # SD_RUNS: which runs (all four by default; "auto_a auto_b" for the bits alone in a short call).
  for name in ${SD_RUNS:-auto_a auto_b xla notriton}; do
    case $name in
      xla) sd_run xla --config.guidance.sd.attention=xla ;;
      # Without Triton GEMM fusions (cuBLAS, no GEMM autotuning): does it compile faster, as the Shapes job does?
      notriton) sd_run notriton --config.gpu_triton_gemm=false ;;
      *) sd_run "$name" ;;
    esac
  done
  # SD configs inherit the Shapes quality config's surface (configs/surface.py: signed distance, eikonal and l1
  # normal smoothness): what it costs the SD step against the paper's density field, in the same call.
  for field in density surface; do
    sets=""; [ $field = density ] && sets="--set=field.density_activation=exp"
    XLA_PYTHON_CLIENT_PREALLOCATE=false job "step_$field" 170 python3 benchmarks/sd_step.py --model=$CKPT --steps=30 \
      --noparts $sets ${SD_STEP_FLAGS:-} --out="$R/step_$field.json"  # SD_STEP_FLAGS: sizes for a CPU smoke test.
  done
  for name in auto_a auto_b xla notriton; do  # Each run's compile time and pace.
    echo "$name: $(grep -hoE "The train step compiled in [0-9.]+ s|[0-9]+ steps in .*" "$R/bits_$name.log" | tr '\n' ' ')"
  done > "$R/times.txt"
  python3 - <<'PY' | tee "$R/bits.txt"
import json
def rows(name):
  try:
    return [{k: v for k, v in json.loads(l).items() if k != "steps_per_sec"} for l in open(f"/tmp/sd_bits_{name}/metrics.jsonl")]
  except OSError:
    return None
for a, b in [("auto_a", "auto_b"), ("auto_a", "xla")]:
  ra, rb = rows(a), rows(b)
  if not ra or not rb:
    print(f"{b} vs {a}: missing"); continue
  first = next((x["step"] for x, y in zip(ra, rb) if x != y), None)
  worst = max(abs(x[k] - y[k]) / (abs(x[k]) + 1e-12) for x, y in zip(ra, rb) for k in x if isinstance(x[k], float))
  print(f"{b} vs {a}: {len(ra)} / {len(rb)} rows, identical {ra == rb}, first differing step {first}, "
        f"worst relative difference {worst:.2e}")
PY
else
  job sd_start 300 python3 benchmarks/sd_start.py --model=$CKPT --config=configs/peacock.py --repeats=3 \
    --timeout=95 --out="$R/sd_start.json"
  XLA_PYTHON_CLIENT_PREALLOCATE=false job sd_vs_torch 240 python3 benchmarks/sd_vs_torch.py --model=$CKPT \
    --out="$R/sd_vs_torch.json"
fi
