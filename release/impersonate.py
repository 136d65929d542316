"""Runs a Python module as another service account, for a build step that must not act as the build.

    python -m release.impersonate monitoring@my-project.iam.gserviceaccount.com -- \\
        python -m monitoring apply --config monitoring/chicago_taxi.yaml --project my-project --location us-central1

Cloud Build runs as the release-build account, which holds no deploy rights; it may only mint tokens
for the narrow deploy identities (roles/iam.serviceAccountTokenCreator on them, terraform/). gcloud
steps impersonate with `--impersonate-service-account`; the Google client libraries have no such
switch, so this runs the module in this process with `google.auth.default()` answering with
short-lived impersonated credentials of the target, minted from the build's own. No key is involved.
"""

from __future__ import annotations

import contextlib
import re
import runpy
import sys
from collections.abc import Iterator
from unittest import mock

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
_SERVICE_ACCOUNT = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z0-9.-]+\.iam\.gserviceaccount\.com")
USAGE = "usage: python -m release.impersonate SERVICE_ACCOUNT_EMAIL -- python -m MODULE [ARGS...]"


@contextlib.contextmanager
def impersonating(target: str, lifetime_seconds: int = 3600) -> Iterator[None]:
    """Within the block, `google.auth.default()` returns credentials acting as `target`."""
    import google.auth
    from google.auth import impersonated_credentials

    source, project = google.auth.default(scopes=SCOPES)

    def default(scopes=None, request=None, quota_project_id=None, default_scopes=None):  # google.auth.default's
        credentials = impersonated_credentials.Credentials(
            source_credentials=source, target_principal=target, target_scopes=list(scopes or default_scopes or SCOPES),
            lifetime=lifetime_seconds)
        return credentials, project

    with mock.patch.object(google.auth, "default", default):
        yield


def parse(argv: list[str]) -> tuple[str, str, list[str]]:
    """(service account, module, module arguments); ValueError naming what is wrong otherwise."""
    if len(argv) < 5 or argv[1] != "--" or argv[2] not in ("python", "python3") or argv[3] != "-m":
        raise ValueError(f"{USAGE}\n  got: {' '.join(argv) or '(nothing)'}")
    if not _SERVICE_ACCOUNT.fullmatch(argv[0]):
        raise ValueError(f"{argv[0]!r} is not a service account email such as "
                         "deployer@my-project.iam.gserviceaccount.com")
    return argv[0], argv[4], argv[5:]


def main(argv: list[str] | None = None) -> int:
    from google.auth.exceptions import DefaultCredentialsError

    try:
        target, module, arguments = parse(sys.argv[1:] if argv is None else argv)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    sys.argv = [module, *arguments]
    try:
        with impersonating(target):
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    except DefaultCredentialsError as error:
        print(f"impersonating {target} needs credentials of its own to start from (the build's): {error}",
              file=sys.stderr)
        return 1
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
