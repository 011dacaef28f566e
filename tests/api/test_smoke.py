from tests.api.helpers import sha256_hex, uploaded
from tests.conftest import Caller


async def test_upload_confirm_and_download_round_trip(alice: Caller) -> None:
    data = b"hello bigupload" * 1000
    record = await uploaded(alice, data, checksum_sha256=sha256_hex(data))
    assert record["status"] == "uploaded"
    assert record["stored_size"] == len(data)
    link = (await alice.get(f"/api/v1/files/{record['id']}/download")).json()
    body = await alice.http.get(link["url"])
    assert body.status_code == 200
    assert sha256_hex(body.content) == sha256_hex(data)
