"""``python -m workers``: consume the job queue with Ray Train."""

import argparse
import dataclasses

from workers.loop import WorkerSettings, serve


def main() -> None:
    parser = argparse.ArgumentParser(description="Run queued training jobs on Ray.")
    parser.add_argument(
        "--exit-when-idle", action="store_true", help="Stop when the queue is empty."
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="Jobs run at once at most, as resources allow (default: RECU_WORKER_CONCURRENCY, 1).",
    )
    args = parser.parse_args()
    settings = WorkerSettings()
    if args.concurrency is not None:
        settings = dataclasses.replace(settings, concurrency=args.concurrency)
    serve(settings, exit_when_idle=args.exit_when_idle)


if __name__ == "__main__":
    main()
