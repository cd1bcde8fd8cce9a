"""Files by key: local or S3 storage, and fetching user-supplied URLs into it."""
