"""The JSON log format: one object per line, with bound job context and ``extra`` figures."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from workers import logconfig


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    """What the configured root handler writes, restored to the test run's logging after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logconfig.configure("INFO", "json")
    [handler] = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    written = io.StringIO()
    handler.setStream(written)
    yield written
    logconfig.clear()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_line_carries_the_job_context_and_its_extra_figures(output: io.StringIO) -> None:
    logconfig.bind_job(job_id="j-1", account="default", activity_id=None)
    logging.getLogger("workers.export.download").info(
        "job %s: streamed", "j-1", extra={"stream_seconds": 1.25, "seal_seconds": 0.5}
    )
    [record] = [json.loads(line) for line in output.getvalue().splitlines()]
    assert record["event"] == "job j-1: streamed"
    assert (record["job_id"], record["account"]) == ("j-1", "default")
    assert "activity_id" not in record
    assert (record["stream_seconds"], record["seal_seconds"]) == (1.25, 0.5)
    assert (record["level"], record["logger"]) == ("info", "workers.export.download")
