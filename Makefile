PY ?= .venv/bin/python

.PHONY: bench bench-full bench-quick bench-pools chaos test demo

# Every benchmark but the 500-slot rows (shown as "not run: left to make bench-full"):
# bench/results/latest.{json,md} and BENCHMARKS.md. Run time: BENCHMARKS.md, "Run time".
# BENCH_ARGS passes options through, e.g. make bench BENCH_ARGS="--generations legacy"
BENCH_ARGS ?=
bench:
	$(PY) -m bench.run $(BENCH_ARGS)

# make bench with the 500-slot / 20,000-task rows too (about an hour on 2 cores)
bench-full:
	$(PY) -m bench.run --full $(BENCH_ARGS)

# A smoke run of the same code on small workloads: bench/results/quick.{json,md}
bench-quick:
	$(PY) -m bench.run --quick

# A mixed batch on three pools, per pool against one number: bench/results/pools.*
bench-pools:
	$(PY) -m bench.pools

# ruff, ruff format --check, mypy --strict, the whole test suite
test:
	sh scripts/test

# The simulator, the engine and the receiver end to end on a sample batch
demo:
	.venv/bin/klingmon demo

# The full chaos run (< 10 min): 500 tasks under faults, 20 SIGKILLs, 2 SIGTERMs
chaos:
	$(PY) -m scripts.chaos
