#!/usr/bin/env bash
# Train the emoji reference image model on a GPU, as ONE device call (about 10 minutes on an H200):
# render the emoji at 64 px (needs fonts-noto-color-emoji; without it this says so and stops), train a
# DiT at 32 x 32 tokens (1,024 per image) in bf16 for --max-minutes, bundle the EMA weights, and write
# samples and 2,000 generated images (for FID / KID here) under $OUT.
#
# Prepare here as for gpu_session.sh (diffusers wheel in .whl/), plus the font file, which the device
# image lacks:  mkdir -p .whl && cp /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf .whl/
# Then: run command="bash benchmarks/gpu_train_reference.sh", carry=[".whl"], timeout_s=580.
set -uo pipefail
out="${OUT:-/tmp/genaccel-gpu-train}"
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
g make-data emoji /tmp/emoji64 --size 64 > "$out/data.log" 2>&1 || { tail -3 "$out/data.log"; exit 1; }
g train /tmp/emoji_dit --data /tmp/emoji64/train --image-size 64 --arch dit --width 384 --depth 12 --heads 6 \
  --patch-size 2 --prediction-type v_prediction --batch-size 128 --learning-rate 3e-4 --warmup-steps 500 \
  --max-steps 1000000 --max-minutes 7 --checkpoint-every 2000 --sample-every 2000 --sample-steps 50 \
  --guidance-scale 1.5 --no-hflip --mixed-precision bf16 --seed 0 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -20 | tee "$out/train.log"
cp -r /tmp/emoji_dit/samples "$out/" 2>/dev/null
last=$(ls -d /tmp/emoji_dit/checkpoints/step-* | sort -t- -k2 -n | tail -1)
python3 -m genaccel.train.bundle "$last" "$out/emoji_dit" | tee -a "$out/train.log"
cp /tmp/emoji_dit/log.jsonl "$out/"
# 2,000 samples (classes in the held-out proportions) as PNGs: the Inception weights (87 MB) cannot travel to the device, so
# FID / KID are computed back here:  genaccel fid data/emoji64/heldout OUT/samples_2000 --kid --kid-subset-size 196
python3 - "$out" <<'PY' 2>&1 | tee "$out/sample.log"
import sys, torch
from pathlib import Path
from genaccel.train.bundle import load_bundled_pipeline
out = Path(sys.argv[1])
pipe = load_bundled_pipeline(out / "emoji_dit", device="cuda", dtype=torch.bfloat16)
pipe.set_progress_bar_config(disable=True)
folder = out / "samples_2000"
folder.mkdir()
import csv  # labels in the held-out split's proportions (People & Body dominates: skin tones)
heldout = [int(row["label"]) for row in csv.DictReader(open("/tmp/emoji64/heldout/labels.csv"))]
labels = [heldout[k % len(heldout)] for k in range(2000)]
for start in range(0, 2000, 250):
    images = pipe(labels[start:start + 250], num_inference_steps=50, guidance_scale=1.5,
                  generator=torch.Generator("cuda").manual_seed(start)).images
    for offset, image in enumerate(images):
        image.save(folder / f"{start + offset:05d}.png")
print("wrote", len(list(folder.glob("*.png"))), "samples")
PY
