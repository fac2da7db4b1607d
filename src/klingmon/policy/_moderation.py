"""Whether a task ended on Kling's content moderation, so resending it is pointless.

Kling reports moderation two ways (reference §6, §8.1): a create refused with code
1301 ("Trigger the content security policy of the platform"), or an accepted task
that ends ``failed`` with a ``task_status_msg`` such as "Failure to pass the risk
control system, please modify the content and retry" (or "触发平台的内容风控").
The same request fails the same way again, so ``retry`` leaves these out unless told.
"""

from __future__ import annotations

import re

from klingmon.domain import TaskStatus

__all__ = ["MODERATION_CODES", "is_moderation_failure"]

#: Kling codes that mean the content itself was refused.
MODERATION_CODES = frozenset({1301})

# Wordings Kling uses for a moderation failure, in English and Chinese.
_WORDING = re.compile(
    r"risk[ -]?control|content security|moderation|风控|内容安全|审核",
    re.IGNORECASE,
)
# ``last_error`` of a rejected task: "<code>: <message>" (see Store.reject).
_CODE_PREFIX = re.compile(r"^\s*(\d{3,5})\s*:")


def is_moderation_failure(
    status: TaskStatus, message: str | None, last_error: str | None = None
) -> bool:
    """Whether a ``failed`` or ``rejected`` task was refused for its content.

    ``message`` is Kling's ``task_status_msg`` (or a rejection's message);
    ``last_error`` is the stored ``"<code>: <message>"`` of a refused create.
    """
    if status not in {TaskStatus.FAILED, TaskStatus.REJECTED}:
        return False
    if last_error:
        found = _CODE_PREFIX.match(last_error)
        if found and int(found.group(1)) in MODERATION_CODES:
            return True
    return any(text and _WORDING.search(text) for text in (message, last_error))
