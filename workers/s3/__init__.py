"""S3: multipart and single streaming uploads, and the metadata that seals an export."""
