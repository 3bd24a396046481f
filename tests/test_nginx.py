"""The documented reverse proxy (docker/nginx/): imports up to IMPORT_MAX_FILE_BYTES, passed on as they arrive;
every other path keeps a small body limit; the client's address is appended to X-Forwarded-For for the app.

Through a real nginx when Debian's package is installed (`.ci/run` installs it): the test starts its own on a free
loopback port with its own prefix and temp folders, in front of a small recording upstream, and stops it after.
Without nginx, the config checks below still run and the real-proxy tests are skipped.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import RequestFactory

from annotate import logins

ROOT = Path(__file__).resolve().parents[1]
LOCATIONS = ROOT / "docker" / "nginx" / "annotate-locations.conf"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
MIB = 1024 * 1024


def _size(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kKmMgG]?)", value).groups()  # type: ignore[union-attr]
    return int(number) * {"": 1, "k": 1024, "m": MIB, "g": 1024 * MIB}[unit.lower()]


def _blocks(text: str) -> tuple[str, dict[str, str]]:
    """(directives outside any location, {location pattern: its body})."""
    locations = dict(re.findall(r"location\s+([^{]+?)\s*\{([^}]*)\}", text))
    outside = re.sub(r"location\s+[^{]+\{[^}]*\}", "", text)
    return outside, locations


def test_the_config_gives_imports_their_own_limit_and_streaming_and_keeps_a_small_limit_elsewhere():
    text = re.sub(r"#.*", "", LOCATIONS.read_text())
    outside, locations = _blocks(text)
    general = _size(re.search(r"client_max_body_size\s+(\S+);", outside).group(1))  # type: ignore[union-attr]
    assert general == 5 * MIB == django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    (pattern, body), *_ = [(p, b) for p, b in locations.items() if p.startswith("~")]
    assert re.search(pattern.removeprefix("~").strip(), "/p/support-bot/import/")
    assert not re.search(pattern.removeprefix("~").strip(), "/p/support-bot/import/3/confirm/")
    limit = _size(re.search(r"client_max_body_size\s+(\S+);", body).group(1))  # type: ignore[union-attr]
    assert limit >= 2 * 1024**3 == django_settings.IMPORT_MAX_FILE_BYTES
    assert re.search(r"proxy_request_buffering\s+off;", body)
    assert "$proxy_add_x_forwarded_for" in outside and "X-Forwarded-Proto $scheme" in outside


def test_the_config_lets_the_apis_batch_pushes_be_as_large_as_the_app_takes():
    text = re.sub(r"#.*", "", LOCATIONS.read_text())
    _outside, locations = _blocks(text)
    batch = [(p.removeprefix("~").strip(), b) for p, b in locations.items() if "api" in p]
    assert len(batch) == 1
    pattern, body = batch[0]
    for path in ("/api/v1/projects/support-bot/items", "/api/v1/projects/a/labels", "/api/v1/projects/a/samples"):
        assert re.search(pattern, path)
    assert not re.search(pattern, "/api/v1/projects") and not re.search(pattern, "/api/v1/projects/a/progress")
    limit = _size(re.search(r"client_max_body_size\s+(\S+);", body).group(1))  # type: ignore[union-attr]
    assert limit == django_settings.API_MAX_BODY_BYTES


# --- Through a real nginx -------------------------------------------------------------------------------------------


class _Upstream(http.server.ThreadingHTTPServer):
    """Stands in for the app: records each request's path, headers and how many body bytes arrived when."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, object]] = []


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Upstream
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        return None

    def _answer(self, received: int) -> None:
        body = json.dumps({"received": received}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.requests.append({"path": self.path, "headers": dict(self.headers), "received": 0})
        self._answer(0)

    def do_POST(self) -> None:
        record: dict[str, object] = {"path": self.path, "headers": dict(self.headers), "received": 0}
        self.server.requests.append(record)
        left = int(self.headers.get("Content-Length") or 0)
        while left:
            chunk = self.rfile.read(min(left, 64 * 1024))
            if not chunk:
                break
            left -= len(chunk)
            record["received"] = int(record["received"]) + len(chunk)  # type: ignore[call-overload]
        self._answer(int(record["received"]))  # type: ignore[call-overload]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def proxy(tmp_path) -> Iterator[tuple[int, _Upstream]]:
    if NGINX is None:
        pytest.skip("nginx is not installed (apt-get install nginx; .ci/run installs it)")
    upstream = _Upstream()
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = _free_port()
    temp = tmp_path / "nginx"
    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (temp / name).mkdir(parents=True)
    conf = temp / "nginx.conf"
    conf.write_text(
        f"""
{"user root;" if os.geteuid() == 0 else ""}
daemon off;
worker_processes 1;
pid {temp}/nginx.pid;
error_log {temp}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {temp}/client_body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    upstream annotate_web {{ server 127.0.0.1:{upstream.server_address[1]}; keepalive 4; }}
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        include {LOCATIONS};
    }}
}}
"""
    )
    checked = subprocess.run([NGINX, "-t", "-p", str(temp), "-c", str(conf)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    server = subprocess.Popen(
        [NGINX, "-p", str(temp), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, (temp / "error.log").read_text()
            time.sleep(0.05)
        yield port, upstream
    finally:
        server.send_signal(signal.SIGQUIT)  # our own nginx, by its id: a graceful stop
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        upstream.shutdown()
        upstream.server_close()


def _post_head(port: int, path: str, length: int, extra: str = "") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(
        (
            f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {length}\r\n{extra}Connection: close\r\n\r\n"
        ).encode()
    )
    return sock


def _response(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def _post(port: int, path: str, body: bytes, extra: str = "") -> tuple[int, bytes]:
    sock = _post_head(port, path, len(body), extra)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # nginx may answer 413 before the whole body
        sock.sendall(body)
    return _response(sock)


def test_a_large_import_passes_the_proxy_and_a_large_body_elsewhere_is_refused_there(proxy):
    port, upstream = proxy
    body = os.urandom(6 * MIB)  # over the 5 MiB every other path takes
    status, answer = _post(port, "/p/support-bot/import/", body)
    assert status == 200 and json.loads(answer) == {"received": len(body)}
    status, _ = _post(port, "/login/", body)
    assert status == 413
    status, _ = _post(port, "/p/support-bot/import/3/confirm/", body)
    assert status == 413
    assert [r["path"] for r in upstream.requests] == ["/p/support-bot/import/"]
    assert _post(port, "/login/", b"username=a&password=b")[0] == 200  # small bodies pass everywhere


def test_an_import_reaches_the_app_while_it_is_still_being_uploaded(proxy):
    port, upstream = proxy
    sock = _post_head(port, "/p/support-bot/import/", 8 * MIB)
    sock.sendall(b"x" * MIB)
    # Unbuffered: the app already reads the body while the client still holds 7 MiB of it.
    deadline = time.monotonic() + 10
    while not (upstream.requests and int(upstream.requests[0]["received"]) > 0):  # type: ignore[call-overload]
        assert time.monotonic() < deadline, "nginx held the body back until it had all of it"
        time.sleep(0.05)
    assert int(upstream.requests[0]["received"]) <= MIB  # type: ignore[call-overload]
    sock.sendall(b"x" * (7 * MIB))
    status, answer = _response(sock)
    assert status == 200 and json.loads(answer) == {"received": 8 * MIB}


def test_the_app_sees_the_address_the_proxy_saw_not_the_one_a_client_claims(proxy, settings):
    port, upstream = proxy
    _post(port, "/login/", b"username=a&password=b", extra="X-Forwarded-For: 6.6.6.6\r\n")
    headers = upstream.requests[-1]["headers"]
    assert isinstance(headers, dict)
    assert headers["X-Forwarded-For"] == "6.6.6.6, 127.0.0.1" and headers["X-Forwarded-Proto"] == "http"
    settings.BEHIND_PROXY, settings.PROXY_COUNT = True, 1
    request = RequestFactory().post("/login/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=headers["X-Forwarded-For"])
    assert logins.client_ip(request) == "127.0.0.1"


def test_the_documented_server_blocks_are_a_valid_nginx_config(tmp_path):
    if NGINX is None or shutil.which("openssl") is None:
        pytest.skip("needs nginx and openssl")
    temp = tmp_path / "nginx"
    temp.mkdir()
    key, cert = str(temp / "key.pem"), str(temp / "cert.pem")
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"]
    subprocess.run([*command, "-keyout", key, "-out", cert], check=True, capture_output=True)
    server = (ROOT / "docker" / "nginx" / "annotate.conf").read_text()
    server = re.sub(r"ssl_certificate\s+\S+;", f"ssl_certificate {temp}/cert.pem;", server)
    server = re.sub(r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {temp}/key.pem;", server)
    server = server.replace("/etc/nginx/snippets/annotate-locations.conf", str(LOCATIONS))
    server = server.replace("listen 80;", f"listen 127.0.0.1:{_free_port()};")
    server = server.replace("listen 443 ssl", f"listen 127.0.0.1:{_free_port()} ssl")
    conf = temp / "nginx.conf"
    conf.write_text(f"pid {temp}/nginx.pid;\nerror_log {temp}/error.log;\nevents {{}}\nhttp {{\n{server}\n}}\n")
    checked = subprocess.run([NGINX, "-t", "-p", str(temp), "-c", str(conf)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
