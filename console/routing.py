"""One table of API routes: it drives routing, role checks, CSRF, path/query/body validation and the OpenAPI document.

A route declares who may call it, its path parameters (by name, see PATH_PARAMS), its query and body models and
the statuses it may answer; the wrapper enforces all of that before the handler runs, so no handler can forget a
check, and the OpenAPI document is generated from the same declarations, so it cannot drift from what is served.
Every error is JSON `{"error": "...", ...}`; a 503 also names what is down (`"down": [...]`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, TypeVar

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model

from console.appkeys import ROUTES
from console.json_text import encode
from console.outage import DB_DOWN, unavailable
from console.security import ACTOR, COOKIE, CSRF_HEADER, VIA_SESSION, csrf_ok
from dispatch.actor import Actor
from dispatch.errors import BadRequest, Forbidden, NotFound
from dispatch.roles import ROLES, with_power
from dispatch.state import TransitionError
from ingest.contract import InputModel, loads
from ingest.signing import SIGNATURE_HEADER, verify

log = logging.getLogger(__name__)

Handler = Callable[[web.Request, Any], Awaitable[Any]]
SecretOf = Callable[[web.Request], str | None]  # a signed route's shared secret (None: not configured here)

EVERYONE = frozenset(ROLES) - {"assistant"}  # every role working in the console (not the assistants)
OFFICERS = with_power("act")  # the station's officers: admin, chief, deputy, duty and community officers
STAFF = with_power("read")  # who reads the records: officers, assessors, brigade reviewers, city supervisors
APPROVERS = with_power("approve")  # leaders: approve penalty decisions and case referrals
ASSISTANTS = frozenset({"assistant"})  # village/community fire assistants: their own reports, nothing else
SIGNED_IN = EVERYONE | ASSISTANTS  # any logged-in user (who am I, log out)
MAX_BODY = 64 * 1024
ID_MAX = 2**31 - 1  # every table's id is a PostgreSQL `integer`: nothing larger can exist
KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"  # ids of units, cameras, zones, masks (config.schema)


def whole_number(value: object) -> object:
    """Path/query integers are plain digits: no sign, spaces, underscores or decimals (pydantic's lax mode takes
    '1.0', ' 1', '1_0'), and at most 19 of them, so the number can be compared before anything else."""
    if isinstance(value, str) and not re.fullmatch(r"[0-9]{1,19}", value):
        raise ValueError("must be a whole number written in digits")
    return value


DbId = Annotated[int, Field(ge=1, le=ID_MAX, description=f"Numeric id, 1 to {ID_MAX}."),
                 BeforeValidator(whole_number)]
Key = Annotated[str, Field(pattern=KEY_PATTERN, description="Id: letters, digits, `_`, `.`, `-`; up to 64.")]
Count = Annotated[int, Field(ge=1, le=1000, description="At most this many items."), BeforeValidator(whole_number)]

# Every path parameter, by name: a route whose path names another one fails at import.
PATH_PARAMS: dict[str, Any] = {
    "id": DbId,
    "incident_id": DbId,
    "unit_id": Key,
    "unit_type": Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$",
                                      description="Unit type code (config/unit_taxonomy.yaml).")],
    "camera_id": Key,
    "zone_id": Key,
    "mask_id": Annotated[str, Field(pattern=r"^([A-Za-z0-9][A-Za-z0-9_.\-]{0,63}|config:[0-9]{1,6})$",
                                    description="Mask id; `config:N` names the config file's N-th mask.")],
    "folder": Annotated[str, Field(pattern=r"^incident-[0-9]{1,10}$", description="`incident-{incident id}`.")],
    "name": Annotated[str, Field(min_length=1, max_length=255, description="Evidence file name.")],
    "receipt": Annotated[str, Field(pattern=r"^[2-9A-HJ-NP-TV-Za-hj-np-tv-z]{5}-?[2-9A-HJ-NP-TV-Za-hj-np-tv-z]{5}$",
                                    description="A report's receipt code: 10 letters and digits, e.g. K7QH3-M9TRW.")],
}
_PARAM = re.compile(r"\{([A-Za-z_]+)(?::[^}]*)?\}")

STATUS_TEXT = {
    101: "Switching Protocols (WebSocket)",
    200: "OK",
    201: "Created",
    206: "Partial Content (Range request)",
    304: "Not Modified (conditional request)",
    400: "Invalid path, query or body (details name the field)",
    401: "Login required (a signed route: signature missing or wrong)",
    403: "Role not allowed, another unit's or agency's data, or CSRF token missing",
    404: "No such object",
    409: "Conflicts with the object's current state (or a stored file no longer matches its recorded SHA-256)",
    413: "Request body too large",
    416: "Range not satisfiable",
    429: "Too many attempts; retry later",
    503: "A part it needs is down (`down` names it: database, video, ...)",
}


class Query(InputModel):
    """Base of query-string models: like bodies, unknown parameters are refused (a typo is an error, not "all");
    an empty value means the parameter is absent."""


class HttpError(Exception):
    """Raised by a handler: answered as JSON `{"error": message, **extra}` with this status."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    summary: str
    roles: frozenset[str] | None  # None: public
    body: type[BaseModel] | None
    handler: Handler
    tag: str
    query: type[Query] | None = None
    upload: dict[str, Any] | None = None  # JSON schema of a multipart/form-data body (the handler reads it)
    success: int = 200
    produces: tuple[str, ...] = ("application/json",)
    extra_statuses: tuple[int, ...] = ()
    path_model: type[BaseModel] | None = None
    statuses: frozenset[int] = field(default_factory=frozenset)
    signed: SecretOf | None = None  # HMAC-SHA256 of the body in X-Firelink-Signature under this secret (no login)

    @property
    def template(self) -> str:
        """The path as OpenAPI writes it (`{folder:incident-\\d+}` → `{folder}`)."""
        return _PARAM.sub(lambda m: "{" + m[1] + "}", self.path)


PATH_PARAMS_KEY = web.RequestKey("path_params", dict)  # validated path parameters, by name
QUERY_KEY = web.RequestKey("query", BaseModel)  # the route's validated query model


def _path_model(path: str) -> type[BaseModel] | None:
    names = _PARAM.findall(path)
    if not names:
        return None
    unknown = [n for n in names if n not in PATH_PARAMS]
    if unknown:
        raise ValueError(f"route {path}: declare path parameters {unknown} in console.routing.PATH_PARAMS")
    fields: dict[str, Any] = {n: (PATH_PARAMS[n], ...) for n in names}
    model: type[BaseModel] = create_model("PathParams", __config__=ConfigDict(extra="forbid"), **fields)
    return model


def _statuses(r: Route) -> frozenset[int]:
    out = {r.success, *r.extra_statuses}
    if r.path_model is not None or r.query is not None or r.body is not None or r.upload is not None:
        out.add(400)
    if r.path_model is not None:
        out.add(404)
        if r.method != "GET":
            out.add(409)
    if r.roles is not None or r.signed is not None:
        out |= {401, 403, 503}
    if r.body is not None or r.upload is not None:
        out.add(413)
    return frozenset(out)


def declared(method: str, path: str, summary: str, handler: Handler, *, roles: frozenset[str] | None,
             body: type[BaseModel] | None = None, tag: str = "api", query: type[Query] | None = None,
             upload: dict[str, Any] | None = None, success: int = 200,
             produces: Iterable[str] = ("application/json",), statuses: Iterable[int] = (),
             signed: SecretOf | None = None) -> Route:
    if signed is not None and (roles is not None or body is None or upload is not None):
        raise ValueError(f"route {path}: a signed route has a JSON body and no roles (the signature is its caller)")
    r = Route(method, path, summary, roles, body, handler, tag, query, upload, success, tuple(produces),
              tuple(statuses), _path_model(path), signed=signed)
    return replace(r, statuses=_statuses(r))


class RouteTable:
    """One console module's routes, declared next to their handlers with `@routes.route(...)`.

    A table serves nothing by itself: console.web.console_routes() lists every module's table, and install() puts
    them on the app, so what the server serves is read in one place (no import registers anything elsewhere)."""

    def __init__(self) -> None:
        self._routes: list[Route] = []

    def __iter__(self) -> Iterator[Route]:
        return iter(self._routes)

    def route(self, method: str, path: str, summary: str, *, roles: frozenset[str] | None,
              body: type[BaseModel] | None = None, tag: str = "api", query: type[Query] | None = None,
              upload: dict[str, Any] | None = None, success: int = 200,
              produces: Iterable[str] = ("application/json",),
              statuses: Iterable[int] = (), signed: SecretOf | None = None) -> Callable[[Handler], Handler]:
        """Declares a route. Statuses implied by the declaration (400 for parameters/bodies, 401/403/503 for a
        role check or a signature, 404 for a path with ids, 409 for changes to an id'd object, 413 for bodies) are
        added. A route with both `body` and `upload` takes either JSON or multipart/form-data (the handler reads
        the multipart form itself: its payload is None then)."""
        def deco(fn: Handler) -> Handler:
            self._routes.append(declared(method, path, summary, fn, roles=roles, body=body, tag=tag, query=query,
                                         upload=upload, success=success, produces=produces, statuses=statuses,
                                         signed=signed))
            return fn
        return deco


def install(app: web.Application, routes: Iterable[Route]) -> None:
    """Serves the routes, each through the wrapper that enforces its declaration, and adds them to the app's table
    (`app[ROUTES]`), which the OpenAPI document lists. A method and path declared twice is refused."""
    if ROUTES not in app:
        app[ROUTES] = []
    table = app[ROUTES]
    taken = {(r.method, r.template) for r in table}
    for r in routes:
        if (r.method, r.template) in taken:
            raise ValueError(f"route {r.method} {r.template} declared twice")
        taken.add((r.method, r.template))
        app.router.add_route(r.method, r.path, _wrap(r))
        table.append(r)




Q = TypeVar("Q", bound=Query)


def query_of(request: web.Request, model: type[Q]) -> Q:
    """The route's validated query (the route declared `query=model`)."""
    q = request[QUERY_KEY]
    assert isinstance(q, model)
    return q


def error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def error_for(exc: BaseException) -> web.Response | None:
    """The JSON answer for an exception a handler may raise on purpose; None for anything else."""
    if isinstance(exc, HttpError):
        return error(exc.status, exc.message, **exc.extra)
    if isinstance(exc, NotFound):
        return error(404, str(exc))
    if isinstance(exc, Forbidden):
        return error(403, str(exc))
    if isinstance(exc, BadRequest | ValueError):
        return error(400, str(exc))
    if isinstance(exc, TransitionError):
        return error(409, str(exc))
    if isinstance(exc, HttpProcessingError):  # e.g. a malformed part header inside a multipart body
        return error(400, f"malformed request: {exc.message}"[:300])
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = sorted(exc.allowed_methods)
        resp = error(405, f"method {exc.method} not allowed here; allowed: {', '.join(allowed)}", allowed=allowed)
        resp.headers["Allow"] = ",".join(allowed)
        return resp
    if isinstance(exc, web.HTTPException) and exc.status >= 400:
        return error(exc.status, exc.text or exc.reason)
    return None


def _details(exc: ValidationError) -> list[dict[str, str]]:
    return [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"].removeprefix("Value error, ")}
            for e in exc.errors()]


def _invalid(what: str, exc: ValidationError) -> web.Response:
    details = _details(exc)
    first = details[0] if details else {"field": "", "message": "invalid"}
    return error(400, f"invalid {what} {first['field']}: {first['message']}".replace("  ", " "), details=details)


async def _check(route: Route, request: web.Request) -> tuple[web.StreamResponse | None, Any]:
    """Identity, CSRF, path, query and body checks in that order: (an error answer, None) or (None, body)."""
    actor: Actor | None = request.get(ACTOR)
    if route.roles is not None:
        if actor is None:
            if request.get(DB_DOWN):  # the session could not be looked up: not the caller's fault
                return unavailable(), None
            # session_expired: a session cookie came but no longer names a session (the login page
            # says "expired" only then, not on a first visit)
            return error(401, "login required", session_expired=COOKIE in request.cookies), None
        if actor.role not in route.roles:
            return error(403, f"role {actor.role} may not {route.summary.lower()}"), None
        if request.method not in ("GET", "HEAD") and request.get(VIA_SESSION) and not csrf_ok(request):
            return error(403, f"missing or wrong {CSRF_HEADER} header"), None
    if route.path_model is not None:
        try:
            request[PATH_PARAMS_KEY] = route.path_model.model_validate(dict(request.match_info)).model_dump()
        except ValidationError as exc:
            return _invalid("path parameter", exc), None
    if route.query is not None:
        try:
            # an empty value means absent (forms send `unit_id=` for "any")
            request[QUERY_KEY] = route.query.model_validate({k: v for k, v in request.query.items() if v != ""})
        except ValidationError as exc:
            return _invalid("query parameter", exc), None
    if route.body is None or (route.upload is not None and request.content_type == "multipart/form-data"):
        return None, None
    if request.content_length is not None and request.content_length > MAX_BODY:
        return error(413, f"request body larger than {MAX_BODY} bytes"), None
    raw = await request.read()
    if route.signed is not None:
        secret = route.signed(request)
        if secret is None:
            return error(403, "this input is not configured here (no signing secret)"), None
        if not verify(secret, raw, request.headers.get(SIGNATURE_HEADER)):
            return error(401, f"missing or wrong {SIGNATURE_HEADER} (sha256=<HMAC-SHA256 of the body, hex>)"), None
    try:
        data = loads(raw or b"{}")
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
        return error(400, f"request body is not valid JSON: {str(exc)[:200]}"), None
    except RecursionError:
        return error(400, "request body is not valid JSON: nested too deeply"), None
    try:
        return None, route.body.model_validate(data)
    except ValidationError as exc:
        return error(400, "invalid request body", details=_details(exc)), None


def _wrap(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            refused, payload = await _check(route, request)
            if refused is not None:
                return refused
            result = await route.handler(request, payload)
        except Exception as exc:
            answer = error_for(exc)
            if answer is None:
                raise  # unexpected: console.web.errors logs it (and tells a database outage apart)
            resp: web.StreamResponse = answer
        else:
            if isinstance(result, web.StreamResponse):
                resp = result
            else:
                resp = web.json_response(result, dumps=encode)
        if resp.status not in route.statuses:
            log.warning("%s %s answered %d, which its route does not declare", request.method, route.template,
                        resp.status)
        return resp

    return handler


# ------------------------------------------------------------------ OpenAPI

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "What was wrong, in English."},
        "details": {"type": "array", "items": {"type": "object", "properties": {
            "field": {"type": "string"}, "message": {"type": "string"}}}},
        "down": {"type": "array", "items": {"type": "string"}},
    },
}
DOWN_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["error", "down"],
    "properties": {"error": {"type": "string"}, "down": {"type": "array", "items": {"type": "string"},
                                                         "description": "What is down: database, video, ..."}},
}


def _schema_of(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schema.pop("$defs", {}))
    return schema


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent or a value, never null: `int | None = None` is documented as an optional int."""
    options = [o for o in schema.get("anyOf", []) if o != {"type": "null"}]
    if len(options) != 1:
        return schema
    rest = {k: v for k, v in schema.items() if k != "anyOf" and not (k == "default" and v is None)}
    return {**options[0], **rest}


def _operation(r: Route, schemas: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": r.summary, "tags": [r.tag], "operationId": r.handler.__name__}
    params: list[dict[str, Any]] = []
    if r.path_model is not None:
        props = _schema_of(r.path_model, schemas)["properties"]
        params += [{"name": n, "in": "path", "required": True, "schema": s} for n, s in props.items()]
    if r.query is not None:
        q = _schema_of(r.query, schemas)
        required = set(q.get("required", []))
        params += [{"name": n, "in": "query", "required": n in required,
                    "description": "An empty value means the parameter is absent.",
                    "schema": {"anyOf": [_not_null(s), {"const": ""}]}}
                   for n, s in q.get("properties", {}).items()]
    if params:
        op["parameters"] = params
    if r.roles is not None:
        csrf = r.method not in ("GET", "HEAD")
        session: dict[str, list[str]] = {"session": [], "csrf": []} if csrf else {"session": []}
        op["security"] = [session, {"agencyToken": []}] if "agency" in r.roles else [session]
        op["description"] = "Roles: " + ", ".join(sorted(r.roles))
    elif r.signed is not None:
        op["security"] = [{"signature": []}]
        op["description"] = f"No login: the body signed with the shared secret in {SIGNATURE_HEADER}."
    else:
        op["security"] = []
    if r.body is not None:
        name = r.body.__name__
        schemas[name] = _schema_of(r.body, schemas)
        content: dict[str, Any] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}
        if r.upload is not None:
            content["multipart/form-data"] = {"schema": r.upload}
        op["requestBody"] = {"required": True, "content": content}
    elif r.upload is not None:
        op["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": r.upload}}}
    responses: dict[str, Any] = {}
    for status in sorted(r.statuses):
        text = STATUS_TEXT.get(status, "")
        if status in (101, 304):
            responses[str(status)] = {"description": text}
        elif status < 300:
            produced: dict[str, Any] = {t: {} for t in r.produces}
            responses[str(status)] = {"description": text, "content": produced}
        else:
            ref = "#/components/schemas/" + ("Unavailable" if status == 503 else "Error")
            responses[str(status)] = {"description": text, "content": {"application/json": {"schema": {"$ref": ref}}}}
    op["responses"] = responses
    return op


def openapi(routes: Iterable[Route], title: str, version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA, "Unavailable": DOWN_SCHEMA}
    for r in routes:
        op = _operation(r, schemas)
        paths.setdefault(r.template, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "Undeclared methods answer 405 with `Allow`. Every error is JSON "
                                "`{\"error\": ...}`; a 503 names what is down."},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "firelink_session",
                            "description": "From POST /api/login."},
                "csrf": {"type": "apiKey", "in": "header", "name": CSRF_HEADER,
                         "description": "The `csrf_token` of POST /api/login; state-changing calls with a session "
                                        "send it."},
                "agencyToken": {"type": "http", "scheme": "bearer",
                                "description": "Agency system token (agencies.<key>.ack_token)."},
                "signature": {"type": "apiKey", "in": "header", "name": SIGNATURE_HEADER,
                              "description": "sha256=<hex HMAC-SHA256 of the exact body under the shared secret> "
                                             "(complaints.hotline.secret)."},
            },
        },
    }
