"""The JSON API (spec section 5). Written next; placeholder blueprint."""

from __future__ import annotations

from quart import Blueprint

api = Blueprint("api", __name__)
