"""The core's refusals; the console maps them to HTTP statuses (and TransitionError, dispatch.state, to 409)."""

from __future__ import annotations


class NotFound(Exception):
    """No such incident/dispatch (HTTP 404)."""


class Forbidden(Exception):
    """The actor may not see or touch this (HTTP 403)."""


class BadRequest(Exception):
    """The request is well-formed but asks for something invalid (HTTP 400)."""
