"""HTTP API of the brigade's review of the documents its stations filed (dispatch.document_reviews)."""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from console.api import _Body, actor
from console.appkeys import DOC_REVIEWS
from console.routing import STAFF, Query, RouteTable, query_of
from dispatch.roles import with_power

routes = RouteTable()
TAG = "reviews"


class FiledQuery(Query):
    pending: bool = Field(False, description="Only documents no one has reviewed yet.")


class ReviewBody(_Body):
    kind: str = Field(..., pattern=r"^[a-z_]{1,32}$", description="Document kind, e.g. notice, penalty, inspection.")
    id: int = Field(..., ge=1, le=2**31 - 1, description="The document's row id (as in its PDF link).")
    verdict: Literal["approved", "returned"] = Field(..., description="approved, or returned with the reason.")
    note: str = Field("", max_length=2000, description="The reviewer's note; required when returned.")


@routes.route("GET", "/api/documents", "Sealed documents of the caller's stations with their reviews (?pending=true)",
              roles=STAFF, tag=TAG, query=FiledQuery)
async def get_documents(request: web.Request, _: None) -> list[dict[str, Any]]:
    return await request.app[DOC_REVIEWS].filed(actor(request), query_of(request, FiledQuery).pending)


@routes.route("POST", "/api/documents/review", "Review a filed document (brigade reviewer; recorded in the hash chain)",
              roles=with_power("review"), body=ReviewBody, tag=TAG)
async def post_review(request: web.Request, body: ReviewBody) -> dict[str, Any]:
    return await request.app[DOC_REVIEWS].review(body.kind, body.id, body.verdict, body.note, actor(request))
