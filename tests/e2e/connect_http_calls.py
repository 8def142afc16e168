"""Calls to the gateway's HTTP/JSON (Connect) port with curl, for the end-to-end tests of
gateway/connect_http.py (tests/e2e/test_connect_http.py, test_connect_http_port.py).

Unary calls answer ``(HTTP status, JSON body)``; server-streaming calls answer their Connect
envelopes as ``(flags, JSON message)``, the last one with ``END_STREAM`` set. curl must be
installed: a missing curl fails the test, it is never skipped.
"""

from __future__ import annotations

import base64
import json
import shutil
import struct
import subprocess
import uuid
from typing import Any

OPEN = "/prgate.v1.PullRequestCommandService/OpenPullRequest"
WATCH_COMMAND = "/prgate.v1.PullRequestCommandService/WatchCommand"
END_STREAM = 0x02  # the Connect envelope flag of the final frame


def curl() -> str:
    found = shutil.which("curl")
    assert found, "curl is not installed (apt-get install curl)"
    return found


def open_body(title: str = "Add a widget", author: str = "ada") -> dict[str, Any]:
    return {
        "command": {
            "repository": "acme/widgets",
            "title": title,
            "author": author,
            "sourceBranch": f"feature/{uuid.uuid4().hex[:8]}",
            "targetBranch": "main",
        }
    }


def post_json(
    base: str, path: str, body: dict[str, Any], *headers: str
) -> tuple[int, dict[str, Any]]:
    """curl a unary Connect call with a JSON body; (HTTP status, JSON answer)."""
    args = [
        curl(),
        "-sS",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-H",
        "Content-Type: application/json",
    ]
    for header in headers:
        args += ["-H", header]
    done = subprocess.run(
        [*args, "--data-binary", "@-", base + path],
        input=json.dumps(body),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    text, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(text)


def post_raw(base: str, path: str, body: str, content_type: str) -> tuple[int, dict[str, Any]]:
    """curl a unary Connect call with ``body`` as it is; (HTTP status, JSON answer)."""
    done = subprocess.run(
        [
            *(curl(), "-sS", "-o", "-", "-w", "\n%{http_code}"),
            *("-H", f"Content-Type: {content_type}", "--data-binary", "@-", base + path),
        ],
        input=body,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    text, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(text)


def frames(data: bytes) -> list[tuple[int, Any]]:
    """The Connect envelopes of a streaming response body: (flags, JSON message)."""
    out = []
    while data:
        assert len(data) >= 5, f"truncated envelope: {data!r}"
        flags, length = struct.unpack(">BI", data[:5])
        out.append((flags, json.loads(data[5 : 5 + length])))
        data = data[5 + length :]
    return out


def stream_json(base: str, path: str, body: dict[str, Any], *headers: str) -> list[Any]:
    """curl a server-streaming Connect call to its end; the frames it answered."""
    message = json.dumps(body).encode()
    args = [curl(), "-sS", "-N", "--output", "-"]
    for header in ("Content-Type: application/connect+json", *headers):
        args += ["-H", header]
    done = subprocess.run(
        [*args, "--data-binary", "@-", base + path],
        input=struct.pack(">BI", 0, len(message)) + message,
        capture_output=True,
        timeout=60,
        check=True,
    )
    return frames(done.stdout)


def debug_of(error: dict[str, Any], type_name: str) -> dict[str, Any]:
    found = [d for d in error.get("details", []) if d["type"] == type_name]
    assert found, f"no {type_name} detail in {error}"
    # The bytes are the detail itself; debug is its JSON form.
    packed = base64.b64decode(found[0]["value"] + "=" * (-len(found[0]["value"]) % 4))
    assert packed, error
    debug: dict[str, Any] = found[0]["debug"]
    return debug
