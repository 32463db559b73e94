"""Alembic environment: the engine comes from ``recu_db.migrate`` (config attributes).

Several API replicas may start at once: on PostgreSQL the migration transaction first
takes a transaction-scoped advisory lock, so one replica migrates and the others then
find the schema current; on SQLite every transaction begins IMMEDIATE, which serialises
them the same way, provided the whole upgrade is one transaction: Alembic's SQLite
default (no transactional DDL) commits after each revision, and a replica that read the
version before another's commit would run the next revision twice. SQLite does run DDL
in a transaction, so the upgrade is configured as one.
"""

from alembic import context
from sqlalchemy import text

from recu_db.models import Base

MIGRATION_LOCK = 0x7265_6375  # "recu": any constant shared by every replica

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, transactional_ddl=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.run_migrations()
    connection.commit()
