"""Benchmark dense SDPA vs window vs proxy attention; writes the `attention` section of BENCHMARKS.md.

    python benchmarks/attention.py                 # CPU fp32 (or CUDA bf16 when a GPU is present)
    python benchmarks/attention.py --no-video      # skip the CogVideoX-5B geometry (slow on CPU)
"""

from genaccel.commands.bench_attention import main

if __name__ == "__main__":
    raise SystemExit(main())
