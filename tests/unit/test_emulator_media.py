"""Media: upload, URL lookup, download with the Bearer token, expiry after 5 minutes, delete."""

from __future__ import annotations

import base64
import hashlib

import httpx
from emulator_harness import AUTH, GRAPH, Harness, emulator_harness

from whatsray.whatsapp.message_content import ImageContent

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


async def upload(
    h: Harness, data: bytes = PNG, mime: str = "image/png", product: str = "whatsapp"
) -> httpx.Response:
    return await h.client.post(
        f"{GRAPH}/media",
        data={"messaging_product": product, "type": mime},
        files={"file": ("photo.png", data, mime)},
        headers=AUTH,
    )


async def test_media_round_trip_with_url_expiry() -> None:
    async with emulator_harness() as h:
        uploaded = await upload(h)
        assert uploaded.status_code == 200
        media_id = uploaded.json()["id"]

        info = await h.client.get(f"/v25.0/{media_id}", headers=AUTH)
        assert info.status_code == 200
        meta = info.json()
        assert meta["messaging_product"] == "whatsapp"
        assert meta["id"] == media_id
        assert meta["mime_type"] == "image/png"
        assert meta["file_size"] == len(PNG)
        assert meta["sha256"] == hashlib.sha256(PNG).hexdigest()
        assert meta["url"].startswith("http://emulator/")

        assert (await h.client.get(meta["url"])).status_code == 401
        wrong = await h.client.get(meta["url"], headers={"Authorization": "Bearer wrong"})
        assert wrong.status_code == 401
        downloaded = await h.client.get(meta["url"], headers=AUTH)
        assert downloaded.status_code == 200
        assert downloaded.content == PNG
        assert downloaded.headers["content-type"] == "image/png"

        h.clock.advance(301)  # the URL lives 5 minutes on the emulator clock
        assert (await h.client.get(meta["url"], headers=AUTH)).status_code == 404
        fresh = (await h.client.get(f"/v25.0/{media_id}", headers=AUTH)).json()["url"]
        assert (await h.client.get(fresh, headers=AUTH)).content == PNG

        deleted = await h.client.delete(f"/v25.0/{media_id}", headers=AUTH)
        assert deleted.json() == {"success": True}
        gone = await h.client.get(f"/v25.0/{media_id}", headers=AUTH)
        assert (gone.status_code, gone.json()["error"]["code"]) == (400, 100)
        assert (await h.client.get(fresh, headers=AUTH)).status_code == 404
        again = await h.client.delete(f"/v25.0/{media_id}", headers=AUTH)
        assert again.json()["error"]["code"] == 100

        requests = await h.control("GET", "requests")
        upload_record = requests[0]
        assert upload_record["body"]["messaging_product"] == "whatsapp"
        assert upload_record["body"]["file"]["size"] == len(PNG)


async def test_upload_is_checked_like_meta() -> None:
    async with emulator_harness() as h:
        unsupported = await upload(h, mime="application/x-msdownload")
        assert unsupported.json()["error"]["code"] == 131053
        too_big = await upload(h, data=b"x" * (5 * 1024 * 1024 + 1))
        assert too_big.json()["error"]["code"] == 131053
        no_product = await upload(h, product="sms")
        assert no_product.json()["error"]["code"] == 100
        no_auth = await h.client.post(
            f"{GRAPH}/media", data={"messaging_product": "whatsapp"}, files={"file": ("a", b"a")}
        )
        assert no_auth.status_code == 401


async def test_phone_number_lookup() -> None:
    async with emulator_harness() as h:
        number = h.config.phone_numbers[0]
        info = (await h.client.get(f"/v25.0/{number.id}", headers=AUTH)).json()
        assert info["display_phone_number"] == number.display_phone_number
        assert info["throughput"] == {"level": "STANDARD"}


async def test_inbound_image_uses_known_media_the_bot_can_download() -> None:
    async with emulator_harness() as h:
        created = await h.control(
            "POST",
            "media",
            json={"mime_type": "image/jpeg", "data_base64": base64.b64encode(PNG).decode()},
        )
        response = await h.inbound(
            message={"type": "image", "media_id": created["id"], "caption": "look"}
        )
        assert response.status_code == 200

        image = response.json()["payload"]["entry"][0]["changes"][0]["value"]["messages"][0]
        assert image["image"]["sha256"] == base64.b64encode(hashlib.sha256(PNG).digest()).decode()
        event = h.receiver.messages()[0]
        assert isinstance(event.content, ImageContent)
        assert event.content.media_id == created["id"]
        assert event.content.caption == "look"
        assert event.content.mime_type == "image/jpeg"

        url = (await h.client.get(f"/v25.0/{created['id']}", headers=AUTH)).json()["url"]
        assert (await h.client.get(url, headers=AUTH)).content == PNG


async def test_control_media_body_is_checked() -> None:
    async with emulator_harness() as h:
        bad = await h.client.post(
            "/emulator/media", json={"mime_type": "image/png", "data_base64": "***"}
        )
        assert bad.status_code == 400
        both = await h.client.post(
            "/emulator/media", json={"mime_type": "text/plain", "text": "a", "data_base64": "YQ=="}
        )
        assert both.status_code == 400
