"""Benchmark orchestration: what runs, in which order, and how results are written.

- `pipelines`: `genaccel bench`: the same prompts and seeds through dense and sparse pipelines,
  then the metrics of `genaccel.eval` (with intervals) per method;
- `report`: report.md / report.json / the speed-vs-quality plot / the image grid;
- `attention`: the op-level table (dense SDPA vs window vs proxy attention);
- `markdown`: tables and the BENCHMARKS.md sections every script in `benchmarks/` writes.

Metrics and timing themselves live in `genaccel.eval`; the scripts that produce BENCHMARKS.md are
in `benchmarks/`, the CLI wrappers in `genaccel.commands`.
"""
