"""Logging set-up: levels, and filters that keep request bytes out of the log."""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import BadHttpMessage


class _DropBadHttp(logging.Filter):
    """aiohttp logs a malformed request at ERROR with the offending bytes (which may carry
    tokens or PHI); the client already got its 400, so the record is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, BadHttpMessage)


def configure(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(_DropBadHttp())
