"""/metrics: Prometheus's scrape of the service (``service.metrics``), admins only."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status
from prometheus_client import CONTENT_TYPE_LATEST

from service.deps import PrincipalDep
from service.metrics import Metrics
from service.responses import error_description

router = APIRouter(tags=["monitoring"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format."},
        403: error_description("The token is not an admin's."),
    },
)
def metrics(request: Request, principal: PrincipalDep) -> Response:
    """Every series in Prometheus's text format (docs/deploy.md, Monitoring, lists them
    with example queries). An admin's token: the figures cover every user's jobs."""
    if not principal.admin:
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN, detail="/metrics needs an admin's token"
        )
    registry: Metrics = request.app.state.metrics
    return Response(registry.exposition(), media_type=CONTENT_TYPE_LATEST)
