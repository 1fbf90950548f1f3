# Two commands do everything: `make demo` and `make test`. Each creates .venv when it is missing or
# older than pyproject.toml / constraints.txt, installs the project into it, then runs its job.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Pins the tested CPU torch build; `make CONSTRAINTS= test` lets pip choose (e.g. a CUDA build).
CONSTRAINTS ?= constraints.txt
EXTRAS ?= dev,contrib,rllib
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# The suite runs on one worker per core (pytest-xdist); PYTEST_WORKERS=0 runs it in this one process.
PYTEST_WORKERS ?= auto
# `make demo` writes here (replaced on every run).
DEMO_DIR ?= demo-output
DEMO_STEPS ?= 50000
DEMO_SEEDS ?= 2

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e ".[$(EXTRAS)]"
	@# RLlib pins gymnasium 1.2.2; the newest release goes to a side folder that tests/test_compat.py puts first
	$(PY) -m pip install --quiet --upgrade --no-deps --target $(VENV)/gymnasium-latest gymnasium
	@touch $(STAMP)

setup: $(STAMP)

# The demo: train the paper's DDQN on the analytic twin of the default preset, play it on real SFL
# training next to a fixed cut, then a short evaluation on the twin (leaderboards, figures, claims.md).
demo: $(STAMP)
	rm -rf $(DEMO_DIR)
	$(PY) train_agent.py --agent ddqn --total-steps $(DEMO_STEPS) --eval-episodes 5 --out $(DEMO_DIR)/ddqn --no-progress
	$(PY) -m evaluation.compare $(DEMO_DIR)/ddqn fixed-shallowest --env-id SFLEnv-v0
	$(PY) evaluate.py --mode all --seeds $(DEMO_SEEDS) --agents $(DEMO_DIR)/ddqn --env-id SFLEnvAnalytic-v0 --out $(DEMO_DIR)/evaluation

# pytest exits 5 when it collects no test: a broken suite, never a pass.
test: $(STAMP)
	@$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

bench: $(STAMP)
	$(PY) benchmarks/round_overhead.py
	$(PY) benchmarks/solver_speed.py
	$(PY) benchmarks/env_speed.py
	$(PY) benchmarks/regimes.py --presets shapes,digits

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache $(DEMO_DIR)
