"""Chains of jobs from the command line: ``submit --after``, ``--init-from``,
``--distill-from`` (what a job waits for, starts from, learns from) and ``--two-stage``
(ReActNet's recipe as two chained jobs: stage 1 binary activations and real weights,
stage 2 binary both, started from stage 1's best checkpoint)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from recu_cli.connection import Service, check, connected
from recu_cli.errors import stderr
from recu_cli.output import console, print_json, print_line
from recu_cli.specs import SpecError

AfterOption = Annotated[
    str | None,
    typer.Option(
        "--after",
        help="Job ids, e.g. 12,15: this job waits (state waiting) until they all succeed, "
        "and fails if one fails or is cancelled.",
    ),
]
InitFromOption = Annotated[
    str | None,
    typer.Option(
        "--init-from",
        help="JOB or JOB:last: start from that job's best (or last) checkpoint's weights, "
        "with this job's own optimizer and schedule; waits for it.",
    ),
]
DistillFromOption = Annotated[
    str | None,
    typer.Option(
        "--distill-from",
        help="JOB or JOB:last: distil from that job's best (or last) checkpoint as the "
        "teacher (set distill.temperature and distill.weight with --set); waits for it.",
    ),
]
TwoStageOption = Annotated[
    bool,
    typer.Option(
        "--two-stage",
        help="Submit two chained jobs: stage 1 with binary activations and real weights, "
        "stage 2 binary both, started from stage 1's best checkpoint (ReActNet, BiPer).",
    ),
]


def job_ref(text: str, option: str) -> dict[str, Any]:
    """``12`` or ``12:best`` / ``12:last`` as (job_id, checkpoint)."""
    job, _, which = text.strip().partition(":")
    if not job.isdigit() or int(job) < 1 or which not in ("", "best", "last"):
        raise SpecError(f"{option} {text!r}: give a job id, optionally :best or :last (12:last)")
    return {"job_id": int(job), "checkpoint": which or "best"}


def job_ids(text: str, option: str) -> list[int]:
    """``12,15`` as [12, 15]."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise SpecError(f"{option} {text!r}: give job ids separated by commas (12,15)")
    return [int(p) for p in parts]


def chain_shortcuts(
    after: str | None, init_from: str | None, distill_from: str | None
) -> dict[str, Any]:
    """The spec paths the chain options set (None: not given)."""
    shortcuts: dict[str, Any] = {"after": None if after is None else job_ids(after, "--after")}
    if init_from is not None:
        ref = job_ref(init_from, "--init-from")
        shortcuts |= {"init_from.job_id": ref["job_id"], "init_from.checkpoint": ref["checkpoint"]}
    if distill_from is not None:
        ref = job_ref(distill_from, "--distill-from")
        shortcuts |= {
            "distill.teacher_job_id": ref["job_id"],
            "distill.checkpoint": ref["checkpoint"],
        }
    return shortcuts


def two_stages(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Stage 1 (real weights) and stage 2 (binary both) of ``body``; stage 2's
    ``init_from`` is filled in once stage 1 has its id."""
    if body.get("init_from"):
        raise SpecError("--two-stage starts stage 2 from stage 1: leave init_from out")
    options = dict(body.get("binary_options") or {})
    if options.get("weights") == "real":
        raise SpecError("--two-stage sets binary_options.weights itself (real, then binary)")
    stage1 = {**body, "binary_options": {**options, "weights": "real"}}
    stage2 = {**body, "binary_options": {**options, "weights": "binary"}}
    return stage1, stage2


def submit_two_stage(
    stage1: dict[str, Any],
    stage2: dict[str, Any],
    service: Service,
    headers: dict[str, str],
    *,
    wait: bool,
    as_json: bool,
) -> None:
    """POST both stages (``two_stages``: stage 2 waits for stage 1); with ``wait``,
    follow both."""
    from recu_cli.client import follow_job, print_checkpoint_ids

    key = headers.get("Idempotency-Key")
    with connected(service) as client:
        first = check(client.post("/jobs", json=stage1, headers=_keyed(key, "stage-1")))
        stage2["init_from"] = {"job_id": first["id"], "checkpoint": "best"}
        second = check(client.post("/jobs", json=stage2, headers=_keyed(key, "stage-2")))
        out = stderr if (as_json and wait) else console
        if not (as_json and not wait):
            out.print(f"stage 1: job {first['id']} {first['state']} (real weights)")
            out.print(f"stage 2: job {second['id']} {second['state']} (from stage 1's best)")
        if not wait:
            if as_json:
                print_json({"stage1": first, "stage2": second})
            return
        first = follow_job(client, first["id"], first["spec"]["epochs"], quiet=as_json)
        second = follow_job(client, second["id"], second["spec"]["epochs"], quiet=as_json)
        checkpoints = check(client.get(f"/jobs/{second['id']}/checkpoints"))
    if as_json:
        print_json({"stage1": first, "stage2": second})
    else:
        print_line(f"stage 2 (job {second['id']}):")
        print_checkpoint_ids(second["id"], checkpoints)


def _keyed(key: str | None, stage: str) -> dict[str, str]:
    """Each stage's own Idempotency-Key, from the one given."""
    return {} if key is None else {"Idempotency-Key": f"{key}/{stage}"}
