"""How a client command reaches the service: ``--api`` and ``--token`` (else RECU_API_URL
and RECU_API_TOKEN), one httpx client, and every refusal turned into a line on stderr
and the exit code of its kind (recu_cli.errors.ExitCode)."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
import typer

from recu_cli.errors import ExitCode, fail, load_settings
from recu_cli.help_text import env_note
from recu_core.settings import ClientSettings, env_name

TOKEN_ENV = env_name(ClientSettings, "api_token")
URL_ENV = env_name(ClientSettings, "api_url")
ApiOption = Annotated[
    str | None,
    typer.Option(
        "--api", help="The service's URL " + env_note(URL_ENV, "http://127.0.0.1:8000") + "."
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="The bearer token, from 'recu token create' " + env_note(TOKEN_ENV) + ".",
        show_default=False,
    ),
]
JsonOption = Annotated[
    bool,
    typer.Option("--json", help="Print the answer as JSON on stdout, and nothing else there."),
]
#: Statuses that say the service itself is unwell (or busy): it cannot answer now.
UNAVAILABLE = range(500, 600)


@dataclass(frozen=True)
class Service:
    """Where the service is and the token to show it: the options, else the environment."""

    url: str
    token: str | None = None

    @classmethod
    def of(cls, api: str | None = None, token: str | None = None) -> Service:
        settings = load_settings(ClientSettings)
        return cls(api or settings.api_url, (token or settings.api_token or "").strip() or None)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, headers=self.headers)


def auth_headers(token: str | None = None) -> dict[str, str]:
    """The bearer header for ``token``, else for RECU_API_TOKEN when set."""
    return Service.of(token=token).headers


def check(response: httpx.Response) -> Any:
    """The JSON body of a successful answer; else the refusal on stderr and its exit."""
    if response.status_code < 400:
        return response.json()
    raise refusal(response)


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        return response.text.strip() or response.reason_phrase
    return detail if isinstance(detail, str) else str(detail)


def refusal(response: httpx.Response) -> typer.Exit:
    """The exit for a 4xx or 5xx answer, its message printed on stderr."""
    status = response.status_code
    if status == 422:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}"
            for e in response.json()["detail"]
        )
        return fail(ExitCode.USAGE, problems, label="rejected")
    if status in (401, 403):
        return fail(
            ExitCode.AUTH,
            f"{_detail(response)}; pass --token or set {TOKEN_ENV} to a token from "
            "`recu token create NAME` (run where the database is reachable)",
            label="not authorised",
        )
    if status == 404:
        return fail(ExitCode.NOT_FOUND, _detail(response), label="not found")
    if status in UNAVAILABLE:
        return fail(
            ExitCode.UNREACHABLE, f"{status} {_detail(response)}", label="service unavailable"
        )
    return fail(ExitCode.FAILED, f"{status} {_detail(response)}", label="refused")


def unreachable(service: Service, err: httpx.HTTPError) -> typer.Exit:
    """The exit for a service out of reach, what happened printed on stderr."""
    return fail(
        ExitCode.UNREACHABLE,
        f"{err or type(err).__name__} (is 'recu serve' running there? --api or {URL_ENV})",
        label=f"cannot reach the service at {service.url}",
    )


@contextmanager
def connected(service: Service) -> Iterator[httpx.Client]:
    """A client of ``service``; a connection failure inside the block exits as such."""
    try:
        with service.client() as client:
            yield client
    except httpx.HTTPError as err:
        raise unreachable(service, err) from None


def call(service: Service, method: str, path: str, **kwargs: Any) -> Any:
    """One request's JSON body; a clear error and exit when it fails or is refused."""
    with connected(service) as client:
        return check(client.request(method, path, **kwargs))


def call_or_none(service: Service, path: str, *, absent: Collection[int] = (404,)) -> Any:
    """GET ``path``'s JSON body, or None when it answers a status of ``absent`` (nothing
    there yet)."""
    with connected(service) as client:
        response = client.get(path)
        return None if response.status_code in absent else check(response)
