"""Local stand-ins for production services, for the tests, the demo and the benchmarks:
an S3-compatible server (rclone) and real ``celery worker`` processes."""
