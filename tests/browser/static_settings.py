"""Settings of the web process in the browser tests: production's, except that static files are collected
into a temporary STATIC_ROOT (`BROWSER_TEST_STATIC_ROOT`), which WhiteNoise serves as it does after
`make run`'s collectstatic."""

import os

from chatproject.settings import *  # noqa: F403

STATIC_ROOT = os.environ["BROWSER_TEST_STATIC_ROOT"]
