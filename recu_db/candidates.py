"""A PostgreSQL claim's candidates, read through indexes in claim order.

The claim order is (key, priority DESC, id) where the key is -1 for a job queued before
``aged_before`` (aging), else its owner's decayed usage (fair share; 0 without). The
first candidates in that order are the union of a few short index reads, never a pass
over every queued job:

- per owner with queued jobs, its first ``PER_OWNER`` jobs by (priority DESC, id) (index
  ``ix_jobs_queued_owner``), keyed by the owner's usage; the owners are found by a
  loose index scan of the same index (one probe per owner), and jobs without an owner
  form one more group with usage 0;
- without fair share, the first ``TOP_K`` of all, keyed 0 (index ``ix_jobs_queued``);
- with aging, the first ``TOP_K`` aged jobs (index ``ix_jobs_queued_created``), keyed -1
  (an aged job may also come through its owner's group, with a larger key: the lower
  copy sorts first).

The union is sorted by the claim order and cut to ``TOP_K``; the claim then locks the
first of those another claim has not locked. Reading all queued rows and joining each to
its owner's usage cost 5.1 ms of server time per claim at 4,000 queued jobs
(docs/benchmarks.md, the fair-share claim).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Float, Integer, bindparam, func, literal, select, true, union_all
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import aliased

from recu_db.models import Job, UtcDateTime
from recu_db.states import JobKind, JobState

#: Candidates kept in claim order: more concurrent claimers than TOP_K could find all of
#: them locked and claim nothing this time (the next poll claims).
TOP_K = 64
#: Candidates per owner: while more claimers than this hold locks on one owner's first
#: jobs at once, the next claimer takes the next owner's job (order bends, never stalls).
PER_OWNER = 8


def _first(where: tuple[Any, ...], key: Any, *more: Any, limit: int = TOP_K) -> Any:
    """The first ``limit`` queued jobs matching ``where`` and ``more`` by (priority DESC,
    id), with ``key`` as their claim key."""
    return (
        select(Job.id, key.label("usage"), Job.priority)
        .where(*where, *more)
        .order_by(Job.priority.desc(), Job.id)
        .limit(limit)
    )


def _owners() -> Any:
    """The owners with a claimable queued job, one index probe each (a loose index scan:
    PostgreSQL has no skip scan); the recursion ends on a NULL row, filtered out."""
    queued = (Job.state == JobState.QUEUED, Job.kind != JobKind.TRIAL)
    first = (
        select(Job.user_id.label("user_id"))
        .where(*queued, Job.user_id.is_not(None))
        .order_by(Job.user_id)
        .limit(1)
        .cte("queued_owners", recursive=True)
    )
    later = aliased(Job)
    following = (
        select(later.user_id)
        .where(
            later.state == JobState.QUEUED,
            later.kind != JobKind.TRIAL,
            later.user_id > first.c.user_id,
        )
        .order_by(later.user_id)
        .limit(1)
        .scalar_subquery()
    )
    return first.union_all(select(following).where(first.c.user_id.is_not(None)))


def _by_owner(where: tuple[Any, ...]) -> list[Any]:
    """Each owner's first PER_OWNER jobs keyed by its usage (the bound arrays
    owners/usages; absent: 0), and the jobs without an owner keyed 0 (one more owner)."""
    owners = _owners()
    usages = (
        func.unnest(
            bindparam("owners", type_=ARRAY(Integer)), bindparam("usages", type_=ARRAY(Float))
        )
        .table_valued("user_id", "usage")
        .render_derived(name="usages")
    )
    usage = func.coalesce(usages.c.usage, 0.0)
    best = (
        select(Job.id, Job.priority)
        .where(*where, Job.user_id == owners.c.user_id)
        .order_by(Job.priority.desc(), Job.id)
        .limit(PER_OWNER)
        .lateral("best")
    )
    grouped = (
        select(best.c.id, usage.label("usage"), best.c.priority)
        .select_from(owners)
        .outerjoin(usages, usages.c.user_id == owners.c.user_id)
        .join(best, true())
        .where(owners.c.user_id.is_not(None))
    )
    return [grouped, _first(where, literal(0.0), Job.user_id.is_(None), limit=PER_OWNER)]


def first_unlocked(where: tuple[Any, ...], *, fair: bool, aging: bool) -> Any:
    """The id of the first candidate in claim order not locked by another claim, as a
    scalar subquery. ``fair``: keyed by the owners' usage; ``aging``: jobs queued before
    ``aged_before`` first."""
    branches = _by_owner(where) if fair else [_first(where, literal(0.0))]
    if aging:
        aged = Job.created_at <= bindparam("aged_before", type_=UtcDateTime())
        branches.append(_first(where, literal(-1.0), aged))
    union = union_all(*branches).subquery("candidates")
    top = (
        select(union.c.id, union.c.usage, union.c.priority)
        .order_by(union.c.usage, union.c.priority.desc(), union.c.id)
        .limit(TOP_K)
        .subquery("top")
    )
    # the conditions again on the locked row: one claimed by another claim since this
    # statement's snapshot is re-read at the lock and no longer matches (skipped)
    return (
        select(Job.id)
        .join(top, top.c.id == Job.id)
        .where(*where)
        .order_by(top.c.usage, top.c.priority.desc(), top.c.id)
        .limit(1)
        .with_for_update(of=Job, skip_locked=True)
        .scalar_subquery()
    )
