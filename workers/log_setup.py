"""The worker's log: one line per claim, start, end, failure and hand-back (logger
``recu.worker``), timestamped on stderr; and Ray's warnings that say nothing to a user of
this service kept out of it.

Nothing is configured where the process has logging set up already (a host application,
pytest): this only fills the gap of a worker run as a program.
"""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: Ray loggers whose warnings are expected in this service's normal running:
#: - Tune's experiment analysis warns "Failed to fetch metrics ... result.json" after every
#:   sweep, because the worker turns Tune's own result files off on purpose
#:   (TUNE_DISABLE_AUTO_CALLBACK_LOGGERS: the results are in the database).
QUIET = ("ray.tune.analysis.experiment_analysis",)


def configure_worker_logging(level: int = logging.INFO) -> None:
    """Send ``recu.*`` records at ``level`` to stderr, unless logging is configured; and
    quiet the Ray loggers in QUIET (errors only)."""
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.ERROR)
    recu = logging.getLogger("recu")
    if logging.getLogger().handlers or recu.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    recu.addHandler(handler)
    recu.setLevel(level)
