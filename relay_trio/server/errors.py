"""JSON errors: every error the server returns is ``{"error": "<message>"}``."""

from __future__ import annotations

from quart import Response, jsonify


def json_error(message: str, status: int, **extra: object) -> tuple[Response, int]:
    return jsonify({"error": message, **extra}), status
