#!/usr/bin/env python3
"""Container health check for the web role: GET http://127.0.0.1:8000/healthz, healthy on 200 {"status": "ok"}.

Standard library only (the slim image has no curl). Installed as /usr/local/bin/annotate-healthcheck by the Dockerfile.

Why the two headers: in production the settings refuse what a bare request to 127.0.0.1 would look like.
- Host: Django answers 400 to a Host that is not in ALLOWED_HOSTS, and the production list holds only the public
  name(s). We send the first entry of ALLOWED_HOSTS (a leading "." wildcard matches its bare domain; "*" or an empty
  list falls back to "localhost", which an empty list rejects, as it should: the app would reject everyone).
- X-Forwarded-Proto: https: with HTTPS=true, SecurityMiddleware redirects plain HTTP to https://. The settings trust
  this header when BEHIND_PROXY/HTTPS are true, as they do for the reverse proxy; with HTTPS=false it is ignored.
A redirect is reported as a failure rather than followed.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request

URL = "http://127.0.0.1:8000/healthz"
TIMEOUT_SECONDS = 4


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # urllib then raises HTTPError for the 3xx


def _host() -> str:
    for entry in os.environ.get("ALLOWED_HOSTS", "").split(","):
        entry = entry.strip()
        if entry and entry != "*":
            return entry.lstrip(".")
    return "localhost"


def main() -> int:
    request = urllib.request.Request(URL, headers={"Host": _host(), "X-Forwarded-Proto": "https"})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=TIMEOUT_SECONDS) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as error:
        print(f"unhealthy: HTTP {error.code} from {URL}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as error:
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1
    if body.get("status") != "ok":
        print(f"unhealthy: {body}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
