# The two commands the README promises: `make install` and `make test`.
UV := python3 -m uv

.PHONY: install test docs dist

APT := $(if $(filter 0,$(shell id -u)),,sudo -n) apt-get
CHROMIUM_INSTALL := { $(APT) install -y --no-install-recommends chromium >/dev/null 2>&1 || { $(APT) update -qq >/dev/null && $(APT) install -y --no-install-recommends chromium >/dev/null; }; }

install:
	@python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet "uv==0.13.8"
	$(UV) sync --locked --extra all
	npm ci --prefix tests/interop --no-audit --no-fund --loglevel=error
	$(UV) sync --locked --project tests/phoenix --quiet
	@# Studio's browser tests drive Debian's Chromium (headless); not needed to use LMFast.
	@command -v chromium >/dev/null 2>&1 || $(CHROMIUM_INSTALL) || echo "note: Studio's browser tests need Chromium (Debian: apt-get install chromium)"

test:
	cargo test --manifest-path native/Cargo.toml --quiet
	$(UV) run --locked ruff check .
	$(UV) run --locked pytest

# Regenerate the command reference from the CLI and build the site (tests check both).
docs:
	$(UV) run --locked typer lmfast.cli.app utils docs --name lmfast --title "Command reference" --output docs/commands.md
	NO_MKDOCS_2_WARNING=1 $(UV) run --locked mkdocs build --strict

# Wheels to install LMFast without a checkout (README, MCP): lmfast, and its Rust core as one
# abi3 wheel for every Python from 3.10. The sdist comes first so no stale build/ leaks in.
dist:
	$(UV) build --out-dir dist .
	$(UV) build --wheel --out-dir dist native
