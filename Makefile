# `make book` builds the book, `make test` runs the tests; both create and reuse .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: book test data env clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

env: $(STAMP)

data: $(STAMP)
	scripts/get-data.sh $(BIN)/python

book: $(STAMP) data
	$(BIN)/jupyter-book build . --warningiserror --keep-going
	@echo "Open _build/html/index.html"

test: $(STAMP) data
	$(BIN)/python -m pytest tests --nbval-lax notebooks/0*.ipynb

clean:
	rm -rf _build
