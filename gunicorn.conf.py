"""gunicorn configuration, picked up by `gunicorn app:server` from the working directory (a
checkout of hrdash).

Everything is in :mod:`hrdash.gunicorn_conf`, which ships with the package: an installed hrdash
runs as `gunicorn -c python:hrdash.gunicorn_conf hrdash.wsgi:server` from any directory. The
master starts exactly one simulator (when no upstream URL is set) and one bridge, under one
supervising process, whatever the number of workers; they stop with gunicorn.
"""

from hrdash.gunicorn_conf import *  # noqa: F403
