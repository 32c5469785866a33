# Packages: `make deb`, `make rpm`, `make packages` (both) build into dist/.
# What they contain and why: docs/deploy.md and packaging/build.py.
# Needs Python 3.11+ with pip, dpkg-deb (.deb) and rpmbuild (.rpm; Debian: apt-get install rpm).
# Everything else (setting up, testing, running) is ./dev: see README.md.

PYTHON ?= $(shell [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)
BUILD  := $(PYTHON) packaging/build.py
ARCH   ?= amd64
OUT    ?= dist

.PHONY: deb rpm packages clean-packages

deb:
	$(BUILD) deb --arch $(ARCH) --out $(OUT)

rpm:
	$(BUILD) rpm --arch $(ARCH) --out $(OUT)

packages:
	$(BUILD) deb rpm --arch $(ARCH) --out $(OUT)

clean-packages:
	rm -rf build/packaging $(OUT)/pilot-agent_*.deb $(OUT)/pilot-agent-*.rpm
