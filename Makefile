# Two commands for a fresh machine:
#   make demo   installs, then trains the CPU recipe (MiniLM on MNLI) and prints accuracies: on 2 cores ~7 min where
#               the CPU computes bf16 natively (AVX-512 BF16/AMX), ~20 min on AVX2-only CPUs (fp32, picked automatically)
#   make test   installs, then checks the code (ruff lint + format, import-linter contracts) and runs the test suite
#               on 2 pytest-xdist workers, a test module per worker (its module fixtures are made once)
#   make lint   only the code checks
# On a GPU machine use the CUDA build of torch: make install TORCH="torch"
VENV ?= .venv
TORCH ?= torch==2.13.0
PYTHON = $(VENV)/bin/python

.PHONY: install demo lint test

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet "$(TORCH)"
	$(VENV)/bin/pip install --quiet -e ".[dev]"
	touch $@

demo: install
	$(VENV)/bin/accelerate launch --config_file configs/accelerate_cpu.yaml scripts/run_mnli.py configs/mnli/minilm_cpu.yaml

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

test: lint
	$(PYTHON) -m pytest -q -n 2 --dist loadscope tests
