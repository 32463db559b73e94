"""Alembic environment: the engine comes from ``recu_db.migrate`` (config attributes)."""

from alembic import context

from recu_db.models import Base

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
