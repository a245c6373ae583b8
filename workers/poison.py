"""A malformed task message is refused and logged, never the end of the worker.

Celery's default strategy builds a request from a message's body. A body that is valid JSON but
not protocol 2's ``[args, kwargs, embed]`` (``{"a": 1}``, say) raises ValueError there, which
escapes the consumer as an "Unrecoverable error" and stops the worker; and as the message was
never acknowledged, Redis hands it to the next worker after the visibility timeout, so one bad
message could stop every worker in turn. Turned into InvalidTaskError, it takes Celery's own
path for an invalid message instead: logged with its body, rejected (dropped), the worker goes
on. The tasks name this strategy (``Strategy``) in ``tasks/base.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery.exceptions import InvalidTaskError
from celery.worker.strategy import default

#: What a body that does not fit the protocol raises while Celery builds the request.
MALFORMED = (ValueError, TypeError, KeyError, AttributeError, IndexError)


def guarded(task: Any, app: Any, consumer: Any, **options: Any) -> Callable[..., Any]:
    """Celery's default strategy for ``task``, with a malformed message refused."""
    handle = default(task, app, consumer, **options)

    def on_message(
        message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **rest: Any
    ) -> Any:
        try:
            return handle(message, body, ack, reject, callbacks, **rest)
        except MALFORMED as error:
            raise InvalidTaskError(f"{task.name}: malformed message: {error!r}") from error

    return on_message
