"""A malformed task message is refused and logged, never the end of the worker.

Celery's default strategy builds a request from a message's body. A body that is valid JSON but
not protocol 2's ``[args, kwargs, embed]`` (``{"a": 1}``, say) raises ValueError there, which
escapes the consumer as an "Unrecoverable error" and stops the worker; and as the message was
never acknowledged, Redis hands it to the next worker after the visibility timeout, so one bad
message could stop every worker in turn. The body's shape is checked before Celery builds the
request, and a body that does not fit is an InvalidTaskError, which takes Celery's own path
for an invalid message: logged with its body, rejected (dropped), the worker goes
on. The tasks name this strategy (``Strategy``) in ``tasks/base.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery.exceptions import InvalidTaskError
from celery.worker.strategy import default


def guarded(task: Any, app: Any, consumer: Any, **options: Any) -> Callable[..., Any]:
    """Celery's default strategy for ``task``, with a malformed message refused."""
    handle = default(task, app, consumer, **options)

    def on_message(message: Any, body: Any, *args: Any, **rest: Any) -> Any:
        # Protocol 2 leaves the body to the request (body is None); protocol 1 decoded it
        # already. A body that cannot be decoded at all raises kombu's DecodeError here, which
        # Celery handles itself.
        payload = message.payload if body is None else body
        problem = shape_problem(payload) if body is None else None
        if problem is not None:
            raise InvalidTaskError(f"{task.name}: malformed message: {problem}")
        return handle(message, body, *args, **rest)

    return on_message


def shape_problem(payload: Any) -> str | None:
    """What is wrong with a protocol 2 body, or None: it must be ``[args, kwargs, embed]``."""
    if not isinstance(payload, list | tuple) or len(payload) != 3:
        return f"the body is not [args, kwargs, embed]: {type(payload).__name__}"
    args, kwargs, embed = payload
    if not isinstance(args, list | tuple):
        return f"args is a {type(args).__name__}, not a list"
    if not isinstance(kwargs, dict):
        return f"kwargs is a {type(kwargs).__name__}, not an object"
    if embed is not None and not isinstance(embed, dict):
        return f"embed is a {type(embed).__name__}, not an object"
    return None
