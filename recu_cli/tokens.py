"""``recu token create|revoke|list``: API tokens, managed on the database directly (run
where RECU_DATABASE_URL reaches it, as an operator; the API never creates tokens)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from recu_cli.connection import JsonOption
from recu_cli.errors import ExitCode, fail, load_settings, usage_error
from recu_cli.help_text import env_note
from recu_cli.output import print_json, print_line
from recu_core.settings import DatabaseSettings, env_name

console = Console()
notes = Console(stderr=True)
token_app = typer.Typer(help="Create, revoke and list API tokens (on the database directly).")
DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="The service's database "
        + env_note(env_name(DatabaseSettings, "database_url"), "the embedded SQLite file")
        + ".",
    ),
]


@contextmanager
def _db(url: str | None) -> Iterator[sessionmaker[Session]]:
    from recu_db.engine import make_sessionmaker
    from recu_db.migrate import migrated_engine

    settings = load_settings(DatabaseSettings, **({} if url is None else {"database_url": url}))
    engine = migrated_engine(settings.database_url, **settings.pool())
    try:
        yield make_sessionmaker(engine)
    finally:
        engine.dispose()


@token_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="The token's name (unique).")],
    user: Annotated[
        str | None, typer.Option(help="The owner; default a user called NAME (created).")
    ] = None,
    admin: Annotated[bool, typer.Option(help="The owner sees every user's work.")] = False,
    database_url: DatabaseOption = None,
) -> None:
    """Create a token and print it (shown this once; only its hash is stored)."""
    from recu_db.tokens import TokenError, create_token

    with _db(database_url) as db:
        try:
            token = create_token(db, name, user=user, admin=admin)
        except TokenError as err:
            raise usage_error(str(err)) from None
    typer.echo(token)
    notes.print(
        f"token {name!r} for user {user or name!r}{' (admin)' if admin else ''}; "
        "use it with: export RECU_API_TOKEN=<the token above>, or pass --token",
        style="dim",
    )


@token_app.command("revoke")
def revoke(
    name: Annotated[str, typer.Argument(help="The token's name.")],
    database_url: DatabaseOption = None,
) -> None:
    """Revoke a token: requests with it are refused (401) from now on."""
    from recu_db.tokens import revoke_token

    with _db(database_url) as db:
        if not revoke_token(db, name):
            raise fail(ExitCode.FAILED, f"no live token called {name!r}: nothing revoked")
    print_line(f"token {name!r} revoked")


@token_app.command("list")
def list_(as_json: JsonOption = False, database_url: DatabaseOption = None) -> None:
    """Every token: name, owner, role, key id, created, revoked (never the token)."""
    from recu_db.tokens import list_tokens

    with _db(database_url) as db:
        rows = list_tokens(db)
    if as_json:
        print_json(
            [
                {
                    "name": t.name,
                    "user": t.user,
                    "role": t.role,
                    "key_id": t.key_id,
                    "created_at": t.created_at.isoformat(),
                    "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
                }
                for t in rows
            ]
        )
        return
    table = Table("name", "user", "role", "key id", "created", "revoked")
    for t in rows:
        table.add_row(
            t.name,
            t.user,
            t.role,
            t.key_id,
            f"{t.created_at:%Y-%m-%d %H:%M}",
            f"{t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "",
        )
    console.print(table)
