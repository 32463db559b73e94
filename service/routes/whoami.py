"""/whoami: who the request's token acts for (what `recu whoami` prints)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from service.deps import PrincipalDep

router = APIRouter(tags=["auth"])


class WhoAmI(BaseModel):
    user: str
    user_id: int
    admin: bool


@router.get("/whoami", response_model=WhoAmI)
async def whoami(principal: PrincipalDep) -> WhoAmI:
    """The user the token belongs to, and whether it is an admin."""
    return WhoAmI(user=principal.name, user_id=principal.user_id, admin=principal.admin)
