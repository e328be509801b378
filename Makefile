# Two set-up commands: `make demo` and `make test`. Both create .venv and install first.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	# torch and torchvision are pinned together here (a mismatched pair breaks torchvision and timm);
	# pyproject keeps open ranges for users elsewhere.
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/kd-suite demo

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -n auto --dist loadfile

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) runs data/synthetic
