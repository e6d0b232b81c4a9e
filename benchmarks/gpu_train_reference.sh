#!/usr/bin/env bash
# Train the emoji reference image model on a GPU, as ONE device call (about 10 minutes on an H200):
# render the emoji at 64 px (needs fonts-noto-color-emoji; without it this says so and stops), train a
# DiT at 32 x 32 tokens (1,024 per image) in bf16 for --max-minutes, bundle the EMA weights, and write
# samples and 2,000 generated images (for FID / KID here) under $OUT.
#
# Prepare here as for gpu_session.sh (diffusers wheel in .whl/), plus the font file, which the device
# image lacks:  mkdir -p .whl && cp /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf .whl/
# Then: run command="bash benchmarks/gpu_train_reference.sh", carry=[".whl"], timeout_s=580.
#
# Dry run on a CPU (checks the whole script in about two minutes before device time is spent):
#   DEVICE=cpu PRECISION=no SIZE=32 WIDTH=32 DEPTH=1 HEADS=1 BATCH=8 MINUTES=0.2 SAMPLES=20 SAMPLE_STEPS=2 \
#     GENACCEL_EMOJI_FONT=/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf OUT=/tmp/dry PATH="$PWD/.venv/bin:$PATH" \
#     bash benchmarks/gpu_train_reference.sh
set -uo pipefail
out="${OUT:-/tmp/genaccel-gpu-train}"
device="${DEVICE:-cuda}"
size="${SIZE:-64}"
samples="${SAMPLES:-2000}"
sample_steps="${SAMPLE_STEPS:-50}"
mkdir -p "$out"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$PWD"
else
  export PYTHONPATH="$PWD"
fi
export GENACCEL_EMOJI_FONT="${GENACCEL_EMOJI_FONT:-$PWD/.whl/NotoColorEmoji.ttf}"
export PYTHONUNBUFFERED=1
g() { python3 -m genaccel "$@"; }
data="/tmp/emoji$size"
g make-data emoji "$data" --size "$size" > "$out/data.log" 2>&1 || { tail -3 "$out/data.log"; exit 1; }
rm -rf /tmp/emoji_dit
g train /tmp/emoji_dit --data "$data/train" --image-size "$size" --arch dit --width "${WIDTH:-384}" \
  --depth "${DEPTH:-12}" --heads "${HEADS:-6}" --patch-size 2 --prediction-type v_prediction \
  --batch-size "${BATCH:-128}" --learning-rate 3e-4 --warmup-steps 500 --max-steps 1000000 \
  --max-minutes "${MINUTES:-7}" --checkpoint-every 2000 --sample-every 2000 --sample-steps "$sample_steps" \
  --guidance-scale 1.5 --no-hflip --mixed-precision "${PRECISION:-bf16}" --seed 0 2>&1 \
  | tr '\r' '\n' | grep -v "it/s\]$" | tail -20 | tee "$out/train.log"
cp -r /tmp/emoji_dit/samples "$out/" 2>/dev/null
last=$(ls -d /tmp/emoji_dit/checkpoints/step-* | sort -t- -k2 -n | tail -1)
python3 -m genaccel.train.bundle "$last" "$out/emoji_dit" | tee -a "$out/train.log"
cp /tmp/emoji_dit/log.jsonl "$out/"
# 2,000 samples (classes in the held-out proportions) as PNGs: the Inception weights (87 MB) cannot travel to the device, so
# FID / KID are computed back here:  genaccel fid data/emoji64/heldout OUT/fid_samples --kid --kid-subset-size 196
python3 - "$out" "$device" "$data" "$samples" "$sample_steps" <<'PY' 2>&1 | tee "$out/sample.log"
import csv, sys, torch
from pathlib import Path
from genaccel.train.bundle import load_bundled_pipeline
out, device, data, count, steps = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
pipe = load_bundled_pipeline(out / "emoji_dit", device=device, dtype=torch.bfloat16 if device == "cuda" else torch.float32)
pipe.set_progress_bar_config(disable=True)
folder = out / "fid_samples"
folder.mkdir(exist_ok=True)
# labels in the held-out split's proportions (People & Body dominates: skin tones)
heldout = [int(row["label"]) for row in csv.DictReader(open(data / "heldout" / "labels.csv"))]
labels = [heldout[k % len(heldout)] for k in range(count)]
for start in range(0, count, 250):
    images = pipe(labels[start:start + 250], num_inference_steps=steps, guidance_scale=1.5,
                  generator=torch.Generator(device).manual_seed(start)).images
    for offset, image in enumerate(images):
        image.save(folder / f"{start + offset:05d}.png")
print("wrote", len(list(folder.glob("*.png"))), "samples")
PY
