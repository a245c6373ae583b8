#!/bin/sh
# One-shot provisioning for the local MinIO, run by the `minio-setup` service (minio/mc image).
#
# Creates the export bucket and applies deploy/minio-lifecycle.json, which aborts incomplete
# multipart uploads one day after they start. The same JSON works unchanged on AWS with
# `aws s3api put-bucket-lifecycle-configuration --lifecycle-configuration file://...`.
#
# MinIO itself does not keep AbortIncompleteMultipartUpload rules (minio/minio#19115 and #15681:
# it drops the action, or rejects a rule that has no other action). On MinIO the same guarantee
# comes from MINIO_API_STALE_UPLOADS_EXPIRY=24h on the minio service, so a rejected import is
# reported but does not stop the stack; bucket creation failing does.
set -eu

: "${MINIO_ENDPOINT:=http://minio:9000}"
: "${S3_BUCKET:=contact-exports}"
: "${LIFECYCLE_FILE:=/deploy/minio-lifecycle.json}"
: "${SETUP_ATTEMPTS:=30}"

attempt=1
until mc alias set local "$MINIO_ENDPOINT" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null; do
    if [ "$attempt" -ge "$SETUP_ATTEMPTS" ]; then
        echo "minio-setup: MinIO at $MINIO_ENDPOINT not reachable after $attempt attempts" >&2
        exit 1
    fi
    attempt=$((attempt + 1))
    sleep 2
done

mc mb --ignore-existing "local/$S3_BUCKET"

if mc ilm rule import "local/$S3_BUCKET" < "$LIFECYCLE_FILE"; then
    echo "minio-setup: lifecycle rules imported from $LIFECYCLE_FILE"
else
    echo "minio-setup: WARNING: MinIO rejected $LIFECYCLE_FILE; incomplete multipart uploads" \
        "are still expired by MINIO_API_STALE_UPLOADS_EXPIRY" >&2
fi
# What the server actually kept, for the logs (MinIO may have dropped the abort action).
mc ilm rule export "local/$S3_BUCKET" || true

echo "minio-setup: bucket $S3_BUCKET ready"
