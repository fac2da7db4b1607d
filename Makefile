PY ?= .venv/bin/python

.PHONY: bench bench-full bench-quick bench-pools bench-accounts chaos test demo

# Every benchmark on the 5-, 20- and 50-slot workloads (8.4 min on 2 cores, measured
# 2026-12-03); the rest show as "not run: left to make bench-full":
# bench/results/latest.{json,md} and BENCHMARKS.md (its "Run time" section).
# BENCH_ARGS passes options through, e.g. make bench BENCH_ARGS="--generations legacy"
BENCH_ARGS ?=
bench:
	$(PY) -m bench.run $(BENCH_ARGS)

# Every row: make bench plus the 500-slot, Kling 3.0 mix and arriving-batches
# workloads (~31 min on 2 idle cores, estimated from per-run CPU; make bench 8.4 min)
bench-full:
	$(PY) -m bench.run --full $(BENCH_ARGS)

# A smoke run of the same code on small workloads: bench/results/quick.{json,md}
bench-quick:
	$(PY) -m bench.run --quick

# A mixed batch on three pools, per pool against one number: bench/results/pools.*
bench-pools:
	$(PY) -m bench.pools

# One batch on two accounts against the same on one: bench/results/accounts.*
bench-accounts:
	$(PY) -m bench.accounts

# ruff, ruff format --check, mypy --strict, the whole test suite
test:
	sh scripts/test

# The simulator, the engine and the receiver end to end on a sample batch
demo:
	.venv/bin/klingmon demo

# The full chaos run (< 10 min): 500 tasks under faults, 20 SIGKILLs, 2 SIGTERMs
chaos:
	$(PY) -m scripts.chaos
