"""Pick and build the configured storage adapter."""

from __future__ import annotations

from bigupload.config import Settings
from bigupload.storage.base import Storage


def build_storage(settings: Settings) -> Storage:
    if settings.storage == "s3":
        from bigupload.storage.s3 import S3Storage, build_client

        assert settings.s3_bucket is not None
        client = build_client(
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            addressing_style=settings.s3_addressing_style,
        )
        return S3Storage(
            client, settings.s3_bucket, conditional_writes=settings.s3_conditional_writes
        )
    from bigupload.storage.local import LocalStorage

    return LocalStorage(
        settings.data_dir / "store",
        public_url=settings.effective_public_url,
        secret=settings.effective_secret_key,
        min_free_space=settings.local_min_free_space,
    )
