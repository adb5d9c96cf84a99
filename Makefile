# `make book` builds the book, `make test` runs the tests; both create and reuse .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

PROFILE ?= cpu
WORKERS ?= 2
RESULTS ?= results
DEVICE  ?= auto
# OVERRIDE=rehearsal and DATA_DIR=... are passed on to the sweep and the notebooks when set;
# DEVICE=cuda renders GPU runs on a machine without a GPU (a cluster's login node)
OPTIONS := $(if $(OVERRIDE),--override $(OVERRIDE)) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(if $(PRETRAINED),--pretrained $(PRETRAINED)) --results-dir $(RESULTS) --device $(DEVICE)
PARAMS  := $(if $(OVERRIDE),-p override $(OVERRIDE)) $(if $(DATA_DIR),-p data_dir $(DATA_DIR)) $(if $(PRETRAINED),-p pretrained $(PRETRAINED)) -p results_dir $(RESULTS) -p device $(DEVICE)
EXPERIMENTS := 10-table2-uniform-noise 11-table3-flip-noise 12-table4-long-tail 13-table5-clothing1m 14-figures 15-report 16-summary 17-own-data

.PHONY: book experiments test data env clean gpu-check gpu-check-quick gpu-tests browser-test

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

env: $(STAMP)

data: $(STAMP)
	scripts/get-data.sh $(BIN)/python

# Train every run the experiments need (both cores, finished runs skipped), then execute each
# experiment notebook with papermill into book/experiments/, which the book publishes (the summary
# writes every result file into an archive there, which its page offers for download). The paper
# profile's runs are never trained here (they come from `gdwlib sweep` on GPUs or a cluster): with
# any missing, `sweep --check` lists them and the sweep command, and make stops.
experiments: $(STAMP) data
	$(BIN)/python -m gdwlib sweep --profile $(PROFILE) $(OPTIONS) $(if $(filter paper,$(PROFILE)),--check,--workers $(WORKERS))
	mkdir -p book/experiments
	for nb in $(EXPERIMENTS); do \
	  $(BIN)/papermill --no-progress-bar notebooks/$$nb.ipynb book/experiments/$$nb.ipynb \
	    -p profile $(PROFILE) -p workers $(WORKERS) $(PARAMS) \
	    $$(test $$nb = 16-summary && echo -p archive book/experiments/results-$(PROFILE).zip) || exit 1; \
	done
	$(BIN)/python -m gdwlib.book book/experiments/*.ipynb

book: experiments
	$(BIN)/jupyter-book build . --warningiserror --keep-going
	@echo "Open _build/html/index.html"

test: $(STAMP) data
	$(BIN)/python -m pytest tests --nbval notebooks/0*.ipynb --nbval-sanitize-with notebooks/nbval-sanitize.cfg

# The browser test (tests/test_browser.py, headless Chromium) on the book `make book` built;
# `make test` runs it on a smoke-profile book of its own.
browser-test: $(STAMP)
	GDW_BOOK_HTML=_build/html $(BIN)/python -m pytest tests/test_browser.py

# The prepared GPU checks (benchmarks/gpu_check.py), with the python that holds PyTorch, no venv,
# so that they run on a GPU machine as it is; results go to $OUT when set, else benchmarks/measured.
# Without CUDA they say so and exit 0. COMMIT names the project's commit where the copy has no .git.
COMMIT ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)
gpu-check-quick:   # about 2 minutes: CUDA against the CPU, the tangent rules, the CUDA tests
	PYTHONPATH=. $(PYTHON) benchmarks/gpu_check.py --quick $(if $(COMMIT),--commit $(COMMIT))
gpu-check:         # about 7 minutes: the above (without the tests), every method's cost, runs per GPU, GPU-hours
	PYTHONPATH=. $(PYTHON) benchmarks/gpu_check.py $(if $(COMMIT),--commit $(COMMIT))
gpu-tests:         # every test of the files that hold CUDA tests, under the machine's own torch
	PYTHONPATH=. $(PYTHON) benchmarks/gpu_check.py --sections cuda_tests --every-test $(if $(COMMIT),--commit $(COMMIT))

clean:
	rm -rf _build book/experiments
