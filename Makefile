PY ?= .venv/bin/python

.PHONY: bench bench-quick bench-pools bench-accounts chaos test demo

# Every benchmark (about 9 min on 2 cores before the new-generation rows run):
# bench/results/latest.{json,md} and BENCHMARKS.md. BENCH_ARGS passes options through,
# e.g. make bench BENCH_ARGS="--generations legacy"
BENCH_ARGS ?=
bench:
	$(PY) -m bench.run $(BENCH_ARGS)

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
