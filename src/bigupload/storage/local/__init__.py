from bigupload.storage.local.store import LocalStorage

__all__ = ["LocalStorage"]
