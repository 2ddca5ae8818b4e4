# Thin wrappers over the reprobook CLI. The first target that needs it creates .venv.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: book test setup clean lint references

book: $(STAMP)
	$(BIN)/reprobook build --profile book

test: $(STAMP)
	$(BIN)/python -m pytest

setup: $(STAMP)

$(STAMP): environment.yml shared/pyproject.toml tools/pip_requirements.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python tools/pip_requirements.py environment.yml > $(VENV)/requirements.txt
	$(BIN)/python -m pip install --quiet -r $(VENV)/requirements.txt
	$(BIN)/python tools/pip_requirements.py --no-deps environment.yml > $(VENV)/requirements-no-deps.txt
	if [ -s $(VENV)/requirements-no-deps.txt ]; then \
	  $(BIN)/python -m pip install --quiet --no-deps -r $(VENV)/requirements-no-deps.txt; fi
	$(BIN)/python -m ipykernel install --sys-prefix --name reprobook --display-name "Python (reprobook)"
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check shared tests papers benchmarks tools

# Regenerates the stored ci claim summaries that the regression test compares against.
references: $(STAMP)
	$(BIN)/python -m pytest tests/test_papers.py --nb-force-regen -k regression

clean:
	$(BIN)/reprobook clean
