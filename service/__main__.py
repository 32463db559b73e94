"""``python -m service``: serve the API with uvicorn.

``--workers N`` (default ``$RECU_API_WORKERS``, else 1) runs N server processes on the
same port; each runs the migrations at start-up (serialised, see recu_db/migrations/env.py)
and has its own database pool (``RECU_DB_POOL_SIZE`` / ``RECU_DB_MAX_OVERFLOW``, see
recu_db/engine.py): on PostgreSQL keep N x (pool size + overflow) under the server's
max_connections.
"""

import argparse
import os

import uvicorn


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the recu API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("RECU_API_WORKERS", "1")),
        help="Server processes (default: RECU_API_WORKERS, else 1).",
    )
    parser.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=os.environ.get("RECU_API_ACCESS_LOG", "true").lower() not in {"0", "false", "no"},
        help="One log line per request (default: RECU_API_ACCESS_LOG, else on).",
    )
    args = parser.parse_args()
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=args.access_log,
    )


if __name__ == "__main__":
    main()
