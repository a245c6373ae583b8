"""An application that enqueues one export through the client helper, in a process of its own:
``python -m tests.integration.signed_caller JOB_ID [wait]``.

Celery registers its signing serializer for a whole process, with one key, so each signer the
message-signing tests play (a trusted caller, a stranger) is a process like this, configured by
MESSAGE_SIGNING_KEY and MESSAGE_SIGNING_CERT alone. With ``wait`` it prints the result as JSON.
"""

from __future__ import annotations

import json
import sys

from contact_exports_client import make_app, submit_export, wait


def main(job_id: str, then: str = "") -> None:
    app = make_app()
    result = submit_export({"fields": ["email_address"]}, job_id=job_id, app=app)
    if then == "wait":
        print(json.dumps(dict(wait(result, timeout=90))))


if __name__ == "__main__":
    main(*sys.argv[1:])
