# Everything installs itself: `make demo` and `make test` work on a fresh machine.
VENV := .venv
PY := $(VENV)/bin/python
DEMO_DB ?= demo-out/deploybench.db

.PHONY: install demo test test-unit test-integration bench clean

install:
	@bash scripts/install.sh

# The main job: a small real study on this host (data sets are generated on first use),
# its results table. Run it again to resume: only what is missing runs. The two `run`s
# measure one pair E2E and inference-only in 6 launches each: best practice 5 compares
# their two ratios, and the sweep drops BM/2/PIN ic after 3 launches (far slower).
demo: install
	@mkdir -p demo-out
	$(VENV)/bin/deploybench doctor
	$(VENV)/bin/deploybench sweep studies/paper-quick.toml --db $(DEMO_DB)
	$(VENV)/bin/deploybench sweep studies/practices-quick.toml --db $(DEMO_DB)
	$(VENV)/bin/deploybench run BM/1/PIN/CPU BM/2/PIN/CPU --app ic --model-size tiny \
	    --requests 16 --repeat 12 --launches 6 --db $(DEMO_DB)
	$(VENV)/bin/deploybench run BM/1/PIN/CPU BM/2/PIN/CPU --app ic --model-size tiny \
	    --requests 16 --repeat 12 --launches 6 --inference-only --db $(DEMO_DB)
	$(VENV)/bin/deploybench show --db $(DEMO_DB)
	$(VENV)/bin/deploybench report --db $(DEMO_DB) -o demo-out/report.html

# Unit and integration tests (integration launches real cgroups, runtimes and guests).
test: install
	$(PY) -m pytest -m "integration or not integration" --durations=15 tests

test-unit: install
	$(PY) -m pytest tests/unit

test-integration: install
	$(PY) -m pytest -m integration tests/integration

bench: install
	$(PY) benchmarks/probe_effect.py
	$(PY) benchmarks/session_overhead.py --platforms BM,CN
	$(PY) benchmarks/time_to_decision.py

clean:
	rm -rf demo-out test-artifacts .pytest_cache
