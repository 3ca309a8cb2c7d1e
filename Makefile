# The two commands of the README. Both install what they need first (cached).
.PHONY: install quickstart test smoke chat

install:
	bash scripts/install.sh

quickstart: install
	.venv/bin/perskit run recipes/quickstart.yaml

smoke: install
	.venv/bin/perskit run recipes/smoke.yaml

# Two worker processes (pytest-xdist), one thread each. Tests are handed out one by one, slow ones
# first, so the heavy tests of one file run on both workers; a file with module fixtures stays on
# one worker so they are built once (tests/conftest.py marks it with an xdist_group). The 15
# slowest tests are listed at the end.
test: install
	OMP_NUM_THREADS=1 .venv/bin/python -m pytest -q -p no:cacheprovider -n 2 --dist loadgroup --no-loadscope-reorder --durations=15

# Chat with the quickstart persona (after `make quickstart`).
chat: install
	.venv/bin/perskit chat export/ada-lin
