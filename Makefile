# The two commands of the README. Both install what they need first (cached).
.PHONY: install quickstart test smoke

install:
	bash scripts/install.sh

quickstart: install
	.venv/bin/perskit run recipes/quickstart.yaml

smoke: install
	.venv/bin/perskit run recipes/smoke.yaml

test: install
	OMP_NUM_THREADS=1 .venv/bin/python -m pytest -q -p no:cacheprovider
