"""HTTP to Google APIs with the smallest import bill: `requests` plus `google-auth`.

`https://` URLs go through an `AuthorizedSession` with Application Default
Credentials (the function's service account on Cloud Run). Plain `http://` is
only ever a local stand-in (config refuses non-loopback http), so it gets a
bare session and no token is ever sent in clear text.

Network failures become `TransientError` so the platform retries the event;
HTTP statuses are for the caller to classify (see `raise_for_status`).
"""

from __future__ import annotations

import os
from typing import Any

import google.auth
import google.auth.exceptions
import requests
from google.auth.transport.requests import AuthorizedSession

from triggers.submission.errors import InvalidRequest, TransientError

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
STORAGE_API = "https://storage.googleapis.com"
# Connect fast, read patiently: creating a PipelineJob can take several seconds.
TIMEOUT_SECONDS = (5.0, 60.0)
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

_sessions: dict[str, requests.Session] = {}


def storage_api_base() -> str:
    """The Cloud Storage JSON API base; honours STORAGE_EMULATOR_HOST like Google's own clients."""
    emulator = os.environ.get("STORAGE_EMULATOR_HOST", "").strip().rstrip("/")
    if not emulator:
        return STORAGE_API
    return emulator if "://" in emulator else f"http://{emulator}"


def session_for(url: str) -> requests.Session:
    """One session per scheme per process, reused across warm invocations."""
    scheme = "https" if url.startswith("https://") else "http"
    if scheme not in _sessions:
        if scheme == "http":
            _sessions[scheme] = requests.Session()
        else:
            try:
                credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
            except google.auth.exceptions.DefaultCredentialsError as error:
                raise InvalidRequest(
                    f"no Google credentials to call {url}: {error} "
                    "(locally: gcloud auth application-default login)") from None
            _sessions[scheme] = AuthorizedSession(credentials)
    return _sessions[scheme]


def send(method: str, url: str, *, json_body: Any = None, params: dict[str, Any] | None = None
         ) -> requests.Response:
    """Sends one request; connection problems and timeouts are transient."""
    try:
        return session_for(url).request(method, url, json=json_body, params=params, timeout=TIMEOUT_SECONDS)
    except (requests.ConnectionError, requests.Timeout) as error:
        raise TransientError(f"{method} {url} failed: {error}") from None
    except google.auth.exceptions.TransportError as error:
        raise TransientError(f"refreshing credentials for {method} {url} failed: {error}") from None
    except google.auth.exceptions.RefreshError as error:
        # google-auth marks the failures worth retrying (e.g. the metadata server briefly unavailable).
        kind = TransientError if error.retryable else InvalidRequest
        raise kind(f"refreshing credentials for {method} {url} failed: {error}") from None


def google_error_message(response: requests.Response) -> str:
    """The `error.status: error.message` a Google API puts in its body, or the raw body."""
    try:
        error = response.json().get("error", {})
        return f"{error.get('status', response.reason)}: {error.get('message', '').strip()}"
    except (ValueError, AttributeError):
        return f"{response.reason}: {response.text[:500].strip()}"


def raise_for_status(response: requests.Response, what: str) -> None:
    """429/5xx → TransientError (retry); any other non-2xx → InvalidRequest (do not retry)."""
    if response.ok:
        return
    detail = f"{what}: HTTP {response.status_code} {google_error_message(response)}"
    if response.status_code in TRANSIENT_STATUSES:
        raise TransientError(detail)
    raise InvalidRequest(detail)
