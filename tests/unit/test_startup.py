"""Start-up checks that need no server (``workers.startup``)."""

from __future__ import annotations

import pytest

from workers.exceptions import ConfigurationError
from workers.startup import check_s3_signer


def test_a_worker_with_botocores_crt_signer_stops_and_says_why() -> None:
    with pytest.raises(ConfigurationError, match="uninstall awscrt"):
        check_s3_signer(has_crt=True)
    check_s3_signer(has_crt=False)
    check_s3_signer()  # this suite's environment has no awscrt, as the image has none
