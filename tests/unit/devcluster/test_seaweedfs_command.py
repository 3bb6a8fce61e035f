"""SeaweedFS for the tests: loopback only, no telemetry, the ports it is given, two identities."""

from __future__ import annotations

from pathlib import Path

from vigil.devcluster.seaweedfs import ADMIN, READER, s3_config, server_command


def test_the_store_binds_to_loopback_with_its_own_ports_and_sends_no_statistics() -> None:
    ports = list(range(40001, 40009))
    command = server_command(Path("/bin/weed"), Path("/data"), ports, Path("/data/s3.json"))
    assert command[:2] == ["/bin/weed", "server"]
    assert "-ip.bind=127.0.0.1" in command
    assert "-master.telemetry=false" in command
    flags = dict(arg.split("=", 1) for arg in command[2:] if "=" in arg)
    given = {flags[name] for name in flags if name.endswith(".port") or name.endswith(".port.grpc")}
    assert given == {str(p) for p in ports}
    # Catalog servers that would take fixed ports are off.
    assert flags["-s3.port.iceberg"] == flags["-s3.port.lance"] == "0"


def test_the_reader_may_only_read_and_list() -> None:
    config = s3_config((ADMIN, READER))
    identities = {i["name"]: i for i in config["identities"]}  # type: ignore[index,union-attr]
    assert identities["reader"]["actions"] == ["Read", "List"]
    assert identities["reader"]["credentials"] == [
        {"accessKey": READER.access_key, "secretKey": READER.secret_key}
    ]
