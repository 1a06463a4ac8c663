# `make run` and `make test` are all a fresh machine needs: they create .venv and install into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000

.PHONY: install run test migrate clean bench chaos chaos-short

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed

migrate: install
	$(PY) manage.py migrate --noinput

# Ctrl-C (or SIGTERM) stops every process of the stack; runstack then exits 0.
run: migrate
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py runstack --port $(PORT)

# A staff superuser without prompts (scripts, containers): Django's `createsuperuser --noinput`, which reads
# DJANGO_SUPERUSER_USERNAME, DJANGO_SUPERUSER_PASSWORD and DJANGO_SUPERUSER_EMAIL (optional here), e.g.
#   DJANGO_SUPERUSER_USERNAME=admin DJANGO_SUPERUSER_PASSWORD='a long passphrase' make superuser
# Without a password Django would create a superuser who cannot log in: refused instead.
.PHONY: superuser
superuser: migrate
	@test -n "$$DJANGO_SUPERUSER_USERNAME" -a -n "$$DJANGO_SUPERUSER_PASSWORD" || \
	  { echo "make superuser: set DJANGO_SUPERUSER_USERNAME and DJANGO_SUPERUSER_PASSWORD" \
	    "(and DJANGO_SUPERUSER_EMAIL if you want one)" >&2; exit 2; }
	DJANGO_SUPERUSER_EMAIL="$${DJANGO_SUPERUSER_EMAIL-}" $(PY) manage.py createsuperuser --noinput

test: install browser
	$(PY) -m pytest $(PYTEST_ARGS)

# The page's browser test (tests/browser/) drives Debian's Chromium with its chromedriver; no browser download.
.PHONY: browser
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  ( echo "installing chromium and chromium-driver (apt)" && \
	    $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
	    $$( [ "$$(id -u)" = 0 ] || echo sudo ) env DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq chromium chromium-driver >/dev/null )

# Starts its own stack on a temporary database (or DATABASE_URL); see bench/README.md.
bench: install
	$(PY) bench/run.py

# Fault injection against the real processes (kills, stops, restarts) proving delivery; see bench/chaos/README.md.
# Exits non-zero if any expectation fails; results in bench/chaos/results/latest.{md,json}.
chaos: install
	$(PY) bench/chaos/run.py --profile full

chaos-short: install
	$(PY) bench/chaos/run.py --profile short

clean:
	rm -rf $(VENV) staticfiles .pytest_cache

# Issue 13's capacity curve: the highest rate holding p99 POST -> frame <= 100 ms, 0 lost, 0 duplicates, per
# web processes x subscribers (and PostgreSQL with DATABASE_URL); bench/results/capacity.{md,json}. CAPACITY_ARGS=--quick: 100
# subscribers only; CAPACITY_ARGS=--batch: the subscribers connect with ?batch=1, as the bundled page does.
.PHONY: capacity
capacity: install
	$(PY) bench/capacity.py $(CAPACITY_ARGS)

# Issue 13's targets 2 and 5 on the embedded broker: idle CPU and commit -> frame per forwarder fetch wait;
# bench/results/fetch_wait.{md,json}.
.PHONY: fetch-wait
fetch-wait: install
	$(PY) bench/fetch_wait.py
