# The two commands of the README. Both install what they need first (cached).
.PHONY: install quickstart test smoke chat

install:
	bash scripts/install.sh

quickstart: install
	.venv/bin/perskit run recipes/quickstart.yaml

smoke: install
	.venv/bin/perskit run recipes/smoke.yaml

test: install
	OMP_NUM_THREADS=1 .venv/bin/python -m pytest -q -p no:cacheprovider

# Chat with the quickstart persona (after `make quickstart`).
chat: install
	.venv/bin/perskit chat export/ada-lin
