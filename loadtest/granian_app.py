"""The hub as an ASGI app for a server other than uvicorn, to compare servers (issue 13):

    DOORSTEP_DATA_DIR=... granian --interface asgi --factory loadtest.granian_app:app

Settings come from the environment, as with ``doorstep serve``, and the collector is tuned
the same way; only the server differs. Not a supported way to run Doorstep: ``doorstep
serve`` is (loadtest/results/server.md says why uvicorn stays).
"""

from __future__ import annotations

from starlette.applications import Starlette

from realtime.app import create_app
from realtime.settings import load_settings, with_secrets


def app() -> Starlette:
    settings, _ = with_secrets(load_settings(), generate=True)
    return create_app(settings, tune_gc=True)
