# Two entry points: `make demo` (install + the main job on synthetic data) and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DEMO_OUT ?= demo_out

.PHONY: demo test test-fast install ffmpeg lint clean

install: $(STAMP)

# FFmpeg shared libraries are what torchcodec decodes with (Debian's ffmpeg package).
ffmpeg:
	@if ! ldconfig -p 2>/dev/null | grep -q 'libavcodec\.so'; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get install -y --no-install-recommends ffmpeg \
		|| ( $$SUDO apt-get update && $$SUDO apt-get install -y --no-install-recommends ffmpeg ); \
	fi

$(STAMP): pyproject.toml constraints.txt | ffmpeg
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: install
	$(BIN)/ssl-video demo --out $(DEMO_OUT)

# the tests marked `slurm` start a real single-node Slurm: its Debian packages are installed here (root only)
test: install
	sh tests/slurm/install.sh
	$(BIN)/python -m pytest -q tests

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not slurm" tests

lint: install
	$(BIN)/ruff check ssl_video tests benchmarks

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
