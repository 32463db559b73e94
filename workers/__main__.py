"""``python -m workers``: consume the job queue with Ray Train."""

import argparse

from workers.loop import WorkerSettings, serve


def main() -> None:
    parser = argparse.ArgumentParser(description="Run queued training jobs on Ray.")
    parser.add_argument(
        "--exit-when-idle", action="store_true", help="Stop when the queue is empty."
    )
    args = parser.parse_args()
    serve(WorkerSettings(), exit_when_idle=args.exit_when_idle)


if __name__ == "__main__":
    main()
