"""bigupload: very large files straight into S3-compatible storage through pre-signed URLs."""

__version__ = "0.1.0"
