"""/ui: the dashboard's pages, its static files, and signing in and out.

Pages are static shells (no data in them); their scripts read the same REST API as any
client, authenticated by the ``recu_session`` cookie that ``POST /ui/session`` sets from
an API token. The cookie is HttpOnly (scripts never see the token), SameSite=Strict,
Secure on https, and lasts for the browser session.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from string import Template

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from recu_db.tokens import authenticate
from service.auth import SESSION_COOKIE
from service.deps import Id, SessionDep

STATIC = Path(__file__).parent / "static"  # served as is under /ui/static
PAGES = Path(__file__).parent / "pages"  # each page's <main>, put in layout.html once

# Scripts and styles only from this origin; no inline code, no frames, no third parties.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

router = APIRouter(prefix="/ui", include_in_schema=False)
root = APIRouter(include_in_schema=False)


@cache
def _html(name: str) -> str:
    """The page ``name``: its body in the shared layout (header, scripts), built once."""
    if name == "login":  # no header: nobody is signed in yet
        return (PAGES / "login.html").read_text()
    layout = Template((PAGES / "layout.html").read_text())
    return layout.substitute(title=name, page=name, main=(PAGES / f"{name}.html").read_text())


def _page(name: str) -> HTMLResponse:
    return HTMLResponse(_html(name), headers=SECURITY_HEADERS)


@root.get("/")
@router.get("")
def home() -> RedirectResponse:
    return RedirectResponse("/ui/jobs", status_code=status.HTTP_307_TEMPORARY_REDIRECT)


@router.get("/jobs")
def jobs_page() -> HTMLResponse:
    return _page("jobs")


@router.get("/jobs/{job_id}")
def job_page(job_id: Id) -> HTMLResponse:
    return _page("job")


@router.get("/compare")
def compare_page() -> HTMLResponse:
    """Jobs side by side (``?jobs=1,2,3``): their curves overlaid, their differing fields."""
    return _page("compare")


@router.get("/sweeps")
def sweeps_page() -> HTMLResponse:
    return _page("sweeps")


@router.get("/sweeps/{sweep_id}")
def sweep_page(sweep_id: Id) -> HTMLResponse:
    return _page("sweep")


@router.get("/login")
def login_page() -> HTMLResponse:
    return _page("login")


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Any string: its shape (``recu_<key id>_<secret>``, fixed lengths, ASCII) is checked
    # by recu_db.tokens before any query, and anything else is a 401 like a dead token.
    token: str = Field(description="An API token.")


@router.post("/session", status_code=status.HTTP_204_NO_CONTENT)
def sign_in(body: SignIn, request: Request, session: SessionDep) -> Response:
    """Check the token and keep it in the session cookie; 401 for a dead token and for
    anything not shaped like a token (NUL, a lone surrogate, another alphabet)."""
    principal = authenticate(session, body.token.strip())
    if principal is None:
        raise HTTPException(status_code=401, detail="invalid or revoked token")
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.set_cookie(
        SESSION_COOKIE,
        body.token.strip(),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
def sign_out() -> Response:
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/whoami")
def whoami(request: Request, session: SessionDep) -> dict[str, object]:
    """Who the dashboard acts for: the signed-in user, the development user, or nobody
    (``user: null``; a 200, so a page that checks leaves no failed request behind)."""
    dev = request.app.state.dev_principal
    if dev is not None:
        return {"user": dev.name, "admin": True, "auth_disabled": True}
    token = request.cookies.get(SESSION_COOKIE)
    principal = authenticate(session, token) if token else None
    if principal is None:
        return {"user": None, "admin": False, "auth_disabled": False}
    return {"user": principal.name, "admin": principal.admin, "auth_disabled": False}
