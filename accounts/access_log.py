"""The access log: one entry per change of access and per audited read.

Services call ``log_access`` inside the transaction of the change they record, so a change
that rolls back leaves no entry and a committed change always has one.
"""

from __future__ import annotations

from typing import Any

from accounts.models import AccessLogEntry
from accounts.policy import Actor

Action = AccessLogEntry.Action


def log_access(
    *,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: int | None,
    target_label: str = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AccessLogEntry:
    return AccessLogEntry.objects.create(
        actor_id=actor.user_id,
        actor_username=actor.username,
        action=action,
        target_type=target_type,
        target_id=target_id,
        target_label=str(target_label)[:255],
        before=before or {},
        after=after or {},
    )


def access_log_list():
    return AccessLogEntry.objects.all()
