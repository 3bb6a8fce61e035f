"""Request identity: the id an answer carries, where it comes from, what a sidecar id says."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest
from sidecar_testkit import base, v2_body

from vigil.sidecar.identity import (
    IdMaker,
    body_id,
    clean_id,
    decode_address,
    encode_address,
    id_key,
    parse_sidecar_id,
)
from vigil.sidecar.wire import parse_request_head, with_identity_headers


class TestSidecarIds:
    def test_a_sidecar_id_names_revision_owner_and_time(self):
        maker = IdMaker("7f3c2a1", "10.1.2.3:8001", clock=lambda: 1_700_000_000.123)
        made = maker.make()
        sid = parse_sidecar_id(made)
        assert sid is not None
        assert (sid.revision, sid.owner, sid.served_at) == (
            "7f3c2a1",
            "10.1.2.3:8001",
            1_700_000_000.123,
        )

    def test_ids_of_one_process_are_unique(self):
        maker = IdMaker("r", "127.0.0.1:9", clock=lambda: 5.0)
        assert len({maker.make() for _ in range(1000)}) == 1000

    def test_ipv6_owner_and_no_owner(self):
        assert decode_address(encode_address("[fd00::5]:8001")) == "[fd00::5]:8001"
        sid = parse_sidecar_id(IdMaker("r.1", "").make())
        assert sid is not None and sid.owner == "" and sid.revision == "r_1"

    @pytest.mark.parametrize(
        "client_id",
        [
            "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
            "vg1.r.7f0000011f41.18b.0.abcd",  # the shape, a wrong check
            "vg1.r.zz.18b.0",
            "order-17",
        ],
    )
    def test_client_ids_are_not_read_as_sidecar_ids(self, client_id):
        assert parse_sidecar_id(client_id) is None

    def test_keys_are_stable_across_processes(self):
        # blake2b, not Python's salted hash(): every pod files an id under the same key.
        digest = hashlib.blake2b(b"order-17", digest_size=8).digest()
        assert id_key("order-17") == int.from_bytes(digest, "big")


class TestClientIds:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [("abc", "abc"), (17, "17"), (True, None), ("", None), ("a b", None), ("x" * 257, None)],
    )
    def test_clean_id(self, value, expected):
        assert clean_id(value) == expected

    def test_body_id_reads_only_the_top_level(self):
        assert body_id(b'{"id": "q-1", "inputs": []}') == "q-1"
        assert body_id(b'{"inputs": [{"name": "id", "parameters": {"id": "no"}}]}') is None
        assert body_id(b'{"id": "broken') is None
        assert body_id(b'[{"id": 1}]') is None


class TestHeaders:
    def test_the_request_header_is_read(self):
        head = parse_request_head(b"POST /x HTTP/1.1\r\nX-Request-ID: abc\r\nHost: h\r\n\r\n")
        assert head.request_id == "abc"

    def test_answer_headers_replace_the_model_servers_id(self):
        raw = b"HTTP/1.1 200 OK\r\nX-Request-Id: theirs\r\nContent-Length: 2\r\n\r\n"
        out = with_identity_headers(raw, b"X-Request-Id: ours\r\nX-Vigil-Revision: r\r\n", True)
        assert out.count(b"X-Request-Id") == 1 and b"ours" in out and out.endswith(b"\r\n\r\n")


class TestThroughTheProxy:
    async def test_answers_carry_the_id_and_revision_and_the_body_is_unchanged(
        self, model, start_sidecar, http
    ):
        sidecar = await start_sidecar(model.url)
        body = v2_body([[1.0, 2.0, 3.0]])
        async with http.post(f"{base(sidecar)}/v2/models/m/infer", data=body) as resp:
            made = resp.headers["X-Request-Id"]
            assert resp.headers["X-Vigil-Revision"] == "r1"
            answer = await resp.read()
        async with http.post(f"{model.url}/v2/models/m/infer", data=body) as resp:
            assert json.loads(answer) == json.loads(await resp.read())
        assert parse_sidecar_id(made) is not None
        assert model.requests[0] == body  # the model got the body as sent

    async def test_the_body_id_wins_over_the_header_and_the_header_over_a_made_one(
        self, model, start_sidecar, http
    ):
        """Gateways (Envoy, ingress-nginx) add or replace X-Request-Id: the body's id is the
        client's. The answer and the model server name the id the prediction is kept under."""
        sidecar = await start_sidecar(model.url)
        url = f"{base(sidecar)}/v2/models/m/infer"
        doc = json.loads(v2_body([[1.0, 2.0, 3.0]]))
        with_id = json.dumps({"id": "body-7", **doc}).encode()
        gateway = "6f1b3c2e-9d1a-4b7e-8c55-0d2f3a4b5c6d"
        async with http.post(url, data=with_id, headers={"X-Request-Id": gateway}) as resp:
            assert resp.headers["X-Request-Id"] == "body-7"
        async with http.post(url, data=with_id, headers={"X-Request-Id": "body-7"}) as resp:
            assert resp.headers["X-Request-Id"] == "body-7"
        async with http.post(
            url, data=v2_body([[1.0, 2.0, 3.0]]), headers={"X-Request-Id": "hdr-1"}
        ) as resp:
            assert resp.headers["X-Request-Id"] == "hdr-1"
        assert model.request_ids == [["body-7"], ["body-7"], ["hdr-1"]]

    @pytest.mark.parametrize(
        "unusable", ["has spaces", "x" * 300, "tab\there"], ids=["spaces", "too-long", "tab"]
    )
    async def test_an_unusable_client_id_is_replaced_for_the_model_server_too(
        self, model, start_sidecar, http, unusable
    ):
        # The model server's logs must name the id the prediction is kept under.
        sidecar = await start_sidecar(model.url)
        url = f"{base(sidecar)}/v2/models/m/infer"
        body = v2_body([[1.0, 2.0, 3.0]])
        async with http.post(url, data=body, headers={"X-Request-Id": unusable}) as resp:
            assert resp.status == 200
            made = resp.headers["X-Request-Id"]
        assert made != unusable and parse_sidecar_id(made) is not None
        assert model.request_ids == [[made]]

    async def test_an_empty_client_id_is_replaced_not_sent_beside_the_sidecars(
        self, model, start_sidecar
    ):
        # An empty id is no id: the model server gets one X-Request-Id, the one kept.
        sidecar = await start_sidecar(model.url)
        body = v2_body([[1.0, 2.0, 3.0]])
        reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.proxy.port)
        try:
            writer.write(
                b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nX-Request-Id: \r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            head = await reader.readuntil(b"\r\n\r\n")
        finally:
            writer.close()
        assert head.startswith(b"HTTP/1.1 200")
        made = head.split(b"X-Request-Id: ")[1].split(b"\r\n")[0].decode()
        assert parse_sidecar_id(made) is not None
        assert model.request_ids == [[made]]

    async def test_v1_body_id(self, model, start_sidecar, http):
        sidecar = await start_sidecar(model.url, protocol="v1")
        body = json.dumps({"id": "v1-9", "instances": [[1.0, 2.0, 3.0]]}).encode()
        async with http.post(f"{base(sidecar)}/v1/models/m:predict", data=body) as resp:
            assert resp.status == 200
            assert resp.headers["X-Request-Id"] == "v1-9"

    async def test_other_endpoints_get_no_id(self, model, start_sidecar, http):
        sidecar = await start_sidecar(model.url)
        async with http.get(f"{base(sidecar)}/status/200") as resp:
            assert "X-Vigil-Revision" not in resp.headers
