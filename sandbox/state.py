"""The sandbox's shared state, gathered in one object handed to every route.

Routes receive this object rather than reaching for globals, so several
sandboxes (one per test, say) can live in one process without interfering.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sandbox.activities import ActivityStore
from sandbox.config import SandboxConfig
from sandbox.contacts import ContactUniverse
from sandbox.csvfile import CsvFormat
from sandbox.faults import FaultBook
from sandbox.ratelimit import RateLimiter
from sandbox.requestlog import RequestLog
from sandbox.spool import Spool
from sandbox.tokens import TokenStore


@dataclass
class Settings:
    """Knobs the control API may change while the sandbox runs."""

    processing_seconds: float
    max_queued: int
    chunked: bool
    #: How percent_done rises (``sandbox.activities.CURVES``), for activities created after.
    progress_curve: str = "linear"
    #: ``millis`` (the swagger's examples) or ``seconds`` (``…:44.000Z``, as other Constant
    #: Contact answers are): the activities' timestamps, for activities created after.
    timestamp_resolution: str = "millis"


@dataclass
class SandboxState:
    config: SandboxConfig
    settings: Settings
    universe: ContactUniverse
    spool: Spool
    activities: ActivityStore
    faults: FaultBook
    limiter: RateLimiter
    tokens: TokenStore
    log: RequestLog

    def reset(self) -> None:
        """Forget activities, faults, the request log and rate counters; keep the spool."""
        self.activities.clear()
        self.faults.clear()
        self.log.clear()
        self.limiter.reset()


def build_state(config: SandboxConfig, spool_dir: Path) -> SandboxState:
    """Assemble the state; raises FaultRuleError when a start-up fault rule is invalid."""
    universe = ContactUniverse(config.seed, config.contacts)
    faults = FaultBook()
    faults.add(list(config.faults))
    return SandboxState(
        config=config,
        settings=Settings(
            processing_seconds=config.processing_seconds,
            max_queued=config.max_queued,
            chunked=config.chunked,
        ),
        universe=universe,
        spool=Spool(spool_dir, universe, CsvFormat(bom=config.bom, crlf=config.crlf)),
        activities=ActivityStore(),
        faults=faults,
        limiter=RateLimiter(config.rate_limit, config.daily_quota),
        tokens=TokenStore(
            config.tokens,
            client_id=config.client_id,
            client_secret=config.client_secret,
            refresh_token=config.refresh_token,
            rotating=config.rotating_refresh_tokens,
            ttl=config.access_token_ttl,
        ),
        log=RequestLog(),
    )
