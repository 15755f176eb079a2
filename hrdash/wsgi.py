"""The WSGI application for gunicorn from an installed package: ``hrdash.wsgi:server`` (the
Flask server of the Dash app built from the HRDASH_* settings; ``app`` is the Dash app)."""

from hrdash.cli import fail
from hrdash.settings import SettingError
from hrdash.webapp import create_app, freeze_startup

try:
    app = create_app()
except SettingError as exc:
    fail(str(exc))
server = app.server
freeze_startup()
