# The two commands: `make run` and `make test`. Both set up .venv first.
PYTHON ?= $(shell command -v python3.12 || command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test proto migrate clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -c 'import sys; assert (3, 11) <= sys.version_info[:2] < (3, 13), "gim needs Python 3.11 or 3.12"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/gim run

test: $(STAMP)
	$(BIN)/pytest

proto: $(STAMP)
	$(BIN)/python -P -m gim.pkg.protogen

migrate: $(STAMP)
	$(BIN)/gim migrate

clean:
	rm -rf $(VENV) var
