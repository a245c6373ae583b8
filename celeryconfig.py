"""Celery settings for the contact-export workers, read from the environment via workers.settings.

Every task is routed to the ``contact_exports`` queue, chain steps included: a step left on
Celery's default ``celery`` queue would never be consumed by ``worker -Q contact_exports``.
"""

from kombu import Queue

from contact_exports_client import QUEUE
from workers.settings import get_settings

_settings = get_settings()

broker_url = _settings.celery_broker_url
result_backend = _settings.celery_result_backend
broker_connection_retry_on_startup = True
# rediss:// URLs (and sentinel:// ones with REDIS_SENTINEL_TLS): the server's certificate is
# verified against REDIS_CA_FILE (kombu alone would connect without verifying it). Plain
# redis:// URLs get no TLS setting at all.
_broker_ssl = _settings.redis_tls.options(broker_url)
_backend_ssl = _settings.redis_tls.options(result_backend)
if _broker_ssl:
    broker_use_ssl = _broker_ssl
if _backend_ssl:
    redis_backend_use_ssl = _backend_ssl
# A countdown (poll backoff) shorter than this never causes a second delivery; a worker that
# dies holding a message gives it back after this long.
broker_transport_options: dict[str, object] = {
    "visibility_timeout": _settings.broker_visibility_timeout,
    # Sweep for such messages every interval (kombu's default scans only every 10th interval).
    "unacked_restore_interval": _settings.broker_restore_interval,
    "unacked_restore_throttle": 1,
}

# Ride out a broker restart of up to about a minute: publishing the next step of a chain (or a
# poll's retry) and storing a result both retry instead of failing the export. Celery's default
# gives up after about a second, which a Redis restart outlasts (bench/soak.py showed it).
_OUTAGE_RETRY = {"max_retries": 40, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2}
# Storing a result reads the old one first; without always_retry a Redis blip there turns a
# finished step into a ConnectionError failure (bench/soak.py caught it).
result_backend_always_retry = True
result_backend_max_retries = 40
result_backend_max_sleep_between_retries_ms = 2000
task_publish_retry = True
task_publish_retry_policy = _OUTAGE_RETRY
result_backend_transport_options: dict[str, object] = {"retry_policy": _OUTAGE_RETRY}
if _settings.broker_master_name:
    broker_transport_options["master_name"] = _settings.broker_master_name
    result_backend_transport_options["master_name"] = _settings.broker_master_name
# REDIS_SENTINEL_TLS: the options above reach the master; the Sentinels need their own.
_broker_sentinels = _settings.redis_tls.sentinel_options(broker_url)
_backend_sentinels = _settings.redis_tls.sentinel_options(result_backend)
if _broker_sentinels:
    broker_transport_options["sentinel_kwargs"] = _broker_sentinels
if _backend_sentinels:
    result_backend_transport_options["sentinel_kwargs"] = _backend_sentinels

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]
# With MESSAGE_SIGNING_* the task serializer becomes Celery's signing "auth" as soon as this
# configuration is read (workers.lifecycle, contact_exports_client.signing); results stay JSON.

task_default_queue = QUEUE
task_queues = (Queue(QUEUE),)
task_routes = {"contact_exports.*": {"queue": QUEUE}}

# At-least-once delivery: a task is acknowledged only when it finished, and a pool process that
# dies mid-task puts the message back. The tasks make repeats harmless.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
# A task that cannot be acknowledged after the broker connection broke runs again anyway;
# cancelling it at once frees the slot, and the job record makes the repeat harmless.
worker_cancel_long_running_tasks_on_connection_loss = False

task_track_started = True
# The caller's id holds its state, PROGRESS and result, nothing of the chain behind it: with
# extended results Celery would add the last step's task name and arguments — the internal job
# record — to it (docs/contract.md §6).
result_extended = False
result_expires = 7 * 24 * 3600
worker_send_task_events = True
task_send_sent_event = True
worker_hijack_root_logger = False
