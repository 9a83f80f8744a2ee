"""Bearer tokens and the browser's sign-in cookie (DESIGN.md §6).

Tokens are configured only as SHA-256 digests (IMAGERY_API_TOKENS_SHA256); a request's token is
hashed and compared with every configured digest by `hmac.compare_digest`, so neither the token
nor its position in the list leaks through timing.

The cookie `imagery_session` never holds the token nor its digest. It is
`<expires>.<HMAC-SHA256(session_key, digest || expires)>`, where `session_key` is random per
process (`ApiContext.session_key`): checking a cookie recomputes the HMAC for each configured
digest. Consequences, on purpose: a cookie expires after `session_max_age_s` (12 h), stops
working when its token's digest is removed from the setting, and every session ends when the
process restarts (sign in again). The cookie is HttpOnly, SameSite=Strict and Path=/.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from fastapi import Depends, HTTPException, Request, status

from pipeline.api.context import ApiContext, api_context

COOKIE = "imagery_session"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def known_digest(ctx: ApiContext, token: str) -> str | None:
    """The configured digest matching `token`, compared in constant time; None when none does."""
    digest = token_digest(token)
    found = None
    for candidate in ctx.config.token_digests:  # no early exit: every digest is compared
        if hmac.compare_digest(candidate, digest):
            found = candidate
    return found


def _session_mac(ctx: ApiContext, digest: str, expires: int) -> str:
    return hmac.new(ctx.session_key, f"{digest}|{expires}".encode(), hashlib.sha256).hexdigest()


def session_cookie(ctx: ApiContext, digest: str, *, now: float | None = None) -> str:
    expires = int(now if now is not None else time.time()) + ctx.config.session_max_age_s
    return f"{expires}.{_session_mac(ctx, digest, expires)}"


def valid_session(ctx: ApiContext, cookie: str, *, now: float | None = None) -> bool:
    expires_text, _, mac = cookie.partition(".")
    if not expires_text.isdigit() or len(mac) != 64:
        return False
    expires = int(expires_text)
    if expires < (now if now is not None else time.time()):
        return False
    ok = False
    for digest in ctx.config.token_digests:
        if hmac.compare_digest(_session_mac(ctx, digest, expires), mac):
            ok = True
    return ok


def authenticated(request: Request, ctx: ApiContext) -> bool:
    """True when the request carries a known bearer token or a valid session cookie."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return known_digest(ctx, token.strip()) is not None
    cookie = request.cookies.get(COOKIE)
    return bool(cookie) and valid_session(ctx, cookie)


def auth_problem(request: Request, ctx: ApiContext) -> str | None:
    """Why `request` is not authenticated (the 401's detail), or None when it is. Reads the
    headers only, never the body."""
    if not ctx.config.token_digests:
        return ("no API tokens are configured (IMAGERY_API_TOKENS_SHA256 is empty), so every "
                "request is refused")
    if not authenticated(request, ctx):
        return ("missing or unknown bearer token: send `Authorization: Bearer <token>` (or sign "
                "in at /login)")
    return None


def require_auth(request: Request, ctx: ApiContext = Depends(api_context)) -> None:
    """Dependency of every protected route, behind `app.RequireAuth` (which already answered 401
    before the body was read): documents the requirement and guards a route mounted elsewhere."""
    problem = auth_problem(request, ctx)
    if problem is not None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=problem,
                            headers={"WWW-Authenticate": "Bearer"})
