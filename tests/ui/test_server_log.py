"""What the server's console log shows a user: Kubin's own start line (its flags, not Gradio's launch()
arguments) and no tracebacks for clients that simply went away."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import httpx


def abandon_upload(url: str, path: str, content_type: str, body: bytes, chunked: bool) -> None:
    """Send the start of a request body and hang up, as a closed tab or an aborted script does."""
    address = urlsplit(url)
    head = f"POST {path} HTTP/1.1\r\nHost: {address.netloc}\r\nContent-Type: {content_type}\r\n"
    head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else "Content-Length: 1000000\r\n\r\n"
    with socket.create_connection((address.hostname, address.port)) as sock:
        sock.sendall(head.encode() + (b"%x\r\n%s\r\n" % (len(body), body) if chunked else body))
        time.sleep(0.2)  # the server is reading the body when the client goes


def test_the_log_shows_kubins_start_line_and_no_traceback_when_a_client_goes_away(kubin_server):
    start = kubin_server.log_path.read_text(encoding="utf-8", errors="replace")
    assert "Kubin is running at" in start
    assert "share=True" not in start and "launch()" not in start, "Gradio's hint names no Kubin flag"
    assert "--share" in start
    seen = len(start)

    # An image upload in the page and a REST call, each abandoned halfway through its body.
    part = b'--b\r\nContent-Disposition: form-data; name="files"; filename="photo.png"\r\n\r\n\x89PNG'
    abandon_upload(
        kubin_server.url, "/gradio_api/upload", "multipart/form-data; boundary=b", part, chunked=False
    )
    abandon_upload(kubin_server.url, "/sdapi/v1/txt2img", "application/json", b'{"prompt": "a', chunked=True)
    assert httpx.get(kubin_server.url + "/sdapi/v1/sd-models", timeout=30).status_code == 200
    time.sleep(0.5)

    after = kubin_server.log_path.read_text(encoding="utf-8", errors="replace")[seen:]
    assert "Traceback" not in after and "ClientDisconnect" not in after, after
