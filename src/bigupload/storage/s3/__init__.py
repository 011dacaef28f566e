from bigupload.storage.s3.store import S3Storage, build_client

__all__ = ["S3Storage", "build_client"]
