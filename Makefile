# Everything a fresh machine needs, in two commands:
#   make demo   - set up .venv and run `kubik demo` on its embedded defaults
#   make test   - set up .venv and run the test suite
# The tests that need a real ComfyUI skip without one; to run them too (as CI does):
#   make comfyui && COMFYUI_DIR=$PWD/build/ComfyUI make test
# The browser tests (tests/browser) also need Chromium, which `make setup` installs from Debian's
# packages when run as root (scripts/install_system_deps.sh), and Python's playwright
# (requirements-dev.txt); KUBIK_SCREENSHOT_DIR=<folder> keeps their screenshots.
PY    ?= python3
COMFYUI_TARBALL ?= ../shared/comfyui/ComfyUI-0.8.0.tar.gz
VENV  ?= .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.kubik-installed

.PHONY: setup demo test comfyui bench demo-3d-model clean-venv

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	bash scripts/install_system_deps.sh
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: setup
	$(BIN)/kubik demo --out out/demo

test: setup
	$(BIN)/python -m pytest -q

# ComfyUI's source unpacked into build/ComfyUI (ignored by git), its requirements in .venv.
comfyui: setup
	bash scripts/setup_comfyui.sh $(COMFYUI_TARBALL) build $(BIN)/python

bench: setup
	$(BIN)/python benchmarks/run_all.py

# Rebuild models/kubik3d/kubik3d_tiny_demo.safetensors from scratch (about 50 minutes on 2 idle CPU cores).
demo-3d-model: setup
	$(BIN)/python scripts/train_3d_model.py build/demo3d --export

clean-venv:
	rm -rf $(VENV)
