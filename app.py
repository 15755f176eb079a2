"""hrdash's entry point. `python app.py` runs everything; `gunicorn app:server` serves the page
(with gunicorn.conf.py starting the one bridge). Logic lives in the hrdash package."""

import sys

from hrdash.cli import fail, main
from hrdash.settings import SettingError
from hrdash.webapp import create_app

if __name__ == "__main__":
    main(["run", *sys.argv[1:]])
else:
    try:
        app = create_app()
    except SettingError as exc:
        fail(str(exc))
    server = app.server
