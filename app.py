"""hrdash's entry point. `python app.py` runs everything; `gunicorn app:server` serves the page
(with gunicorn.conf.py starting the one bridge). Logic lives in the hrdash package."""

import sys

from hrdash.cli import main

if __name__ == "__main__":
    main(["run", *sys.argv[1:]])
else:
    from hrdash.wsgi import app, server

    __all__ = ["app", "server"]
