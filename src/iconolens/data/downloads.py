"""Fetching files over HTTP into a local cache that survives interruptions and flaky servers.

A cached file is named after a hash of its URL and written atomically, and its length is checked against
the ``Content-Length`` the server announced, so a download cut short never looks complete; a file already
in the cache is never fetched again, so an interrupted run resumes where it stopped. Timeouts, connection
errors and 5xx answers (and 408/429) are retried with exponential back-off; other 4xx answers are final.
Failures are ``DownloadError``: one sentence naming the URL.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.parse import urlsplit

from iconolens.atomic import write_atomically
from iconolens.errors import BadInputError
from iconolens.progress import progress

USER_AGENT = "iconolens (+https://iiif.io)"
#: Answers worth asking again: the server is busy or failed, not refusing.
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
#: Suffixes kept on cached files (so a person browsing the cache sees what they are).
KNOWN_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".gif", ".webp", ".jp2", ".bmp"})
CHUNK = 1 << 16


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/iconolens/iiif``, else ``~/.cache/iconolens/iiif``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "iconolens" / "iiif"


def is_url(source: object) -> bool:
    """Whether ``source`` is an ``http://`` or ``https://`` URL (a string; a Path never is)."""
    return isinstance(source, str) and source.lower().startswith(("http://", "https://"))


class DownloadError(BadInputError):
    """A URL that could not be fetched; ``status`` is the HTTP status when the server answered."""

    def __init__(self, url: str, problem: str, status: int | None = None) -> None:
        super().__init__(problem, url)
        self.url = url
        self.status = status


@dataclass(frozen=True)
class DownloadSettings:
    """How patiently to fetch: per-request timeout (s), attempts, first back-off delay (s), parallel requests.

    The delay before attempt ``k + 1`` is ``backoff * 2 ** (k - 1)``; ``sleep`` waits it (tests pass a
    recorder so they need not wait).
    """

    timeout: float = 30.0
    attempts: int = 3
    backoff: float = 0.5
    workers: int = 4
    sleep: Callable[[float], None] = time.sleep


class _Transient(Exception):
    """A failure worth another attempt; ``str`` is the sentence fragment saying what happened."""


def _seconds(value: float) -> str:
    return f"{value:g} s"


class Downloader:
    """Fetches URLs into ``cache_dir`` (files) or memory (documents), with retries and a thread pool."""

    def __init__(self, cache_dir: str | Path, settings: DownloadSettings = DownloadSettings()) -> None:
        if settings.attempts < 1 or settings.workers < 1 or settings.timeout <= 0:
            raise BadInputError("downloads need at least one attempt, one worker and a positive timeout")
        self.cache_dir = Path(cache_dir)
        self.settings = settings

    def cached_path(self, url: str) -> Path:
        """Where the file fetched for ``url`` is (or will be) cached."""
        digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:40]
        suffix = PurePosixPath(urlsplit(url).path).suffix.lower()
        return self.cache_dir / f"{digest}{suffix if suffix in KNOWN_SUFFIXES else '.img'}"

    # --- one request -----------------------------------------------------------------------------

    def _attempt(self, url: str, sink: Callable[[BinaryIO], None] | None) -> bytes:
        """One GET; the body goes to ``sink`` (streamed) or is returned. Raises _Transient or DownloadError."""
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "*/*"})
        timeout = self.settings.timeout
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                announced = response.headers.get("Content-Length")
                expected = int(announced) if announced and announced.isdigit() else None
                received = 0
                chunks: list[bytes] = []

                def copy(handle: BinaryIO | None) -> None:
                    nonlocal received
                    while chunk := response.read(CHUNK):
                        received += len(chunk)
                        if handle is None:
                            chunks.append(chunk)
                        else:
                            handle.write(chunk)
                    if expected is not None and received != expected:
                        raise _Transient(f"the connection closed after {received:,} of {expected:,} bytes")

                if sink is None:
                    copy(None)
                else:
                    sink_with_check = sink  # the caller's writer wraps ``copy``
                    sink_with_check(copy)  # type: ignore[arg-type]
                return b"".join(chunks)
        except urllib.error.HTTPError as exc:
            reason = f"the server answered {exc.code} ({exc.reason})"
            if exc.code in RETRY_STATUS:
                raise _Transient(reason) from None
            raise DownloadError(url, reason, status=exc.code) from None
        except _Transient:
            raise
        except (TimeoutError, http.client.HTTPException, urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) if isinstance(exc, urllib.error.URLError) else exc
            if isinstance(reason, TimeoutError) or isinstance(exc, TimeoutError):
                raise _Transient(f"no answer within {_seconds(timeout)}") from None
            if isinstance(exc, ValueError):
                raise
            raise _Transient(f"the connection failed ({reason or type(exc).__name__})") from None

    def _with_retries(self, url: str, sink: Callable[[BinaryIO], None] | None) -> bytes:
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("http", "https"):
            raise DownloadError(url, "only http:// and https:// URLs can be fetched")
        attempts = self.settings.attempts
        for attempt in range(1, attempts + 1):
            try:
                return self._attempt(url, sink)
            except _Transient as exc:
                if attempt == attempts:
                    tried = f" (tried {attempts} times)" if attempts > 1 else ""
                    raise DownloadError(url, f"{exc}{tried}") from None
                self.settings.sleep(self.settings.backoff * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    # --- public ----------------------------------------------------------------------------------

    def read(self, url: str) -> bytes:
        """The body at ``url`` (not cached: documents such as manifests may change)."""
        return self._with_retries(url, None)

    def fetch(self, urls: Sequence[str]) -> Path:
        """The cached file for ``urls[0]``; when the server refuses one URL (4xx), the next is tried.

        The file is cached under the first URL whichever answered, so a later run asks nothing.
        """
        target = self.cached_path(urls[0])
        if target.is_file():
            return target
        last: DownloadError | None = None
        for url in urls:
            try:
                self._with_retries(url, lambda copy: write_atomically(target, copy))  # type: ignore[arg-type]
                return target
            except DownloadError as exc:
                last = exc
                if exc.status is None or not 400 <= exc.status < 500:
                    raise
        assert last is not None
        raise last

    def fetch_all(self, wanted: Sequence[Sequence[str]], what: str = "Downloading") -> list[Path | DownloadError]:
        """``fetch`` for each list of URLs, ``workers`` at a time; a failure is returned, not raised."""
        results: list[Path | DownloadError | None] = [None] * len(wanted)
        todo = [i for i, urls in enumerate(wanted) if not self.cached_path(urls[0]).is_file()]
        for i, urls in enumerate(wanted):
            if i not in set(todo):
                results[i] = self.cached_path(urls[0])
        if todo:
            with ThreadPoolExecutor(max_workers=min(self.settings.workers, len(todo))) as pool:
                futures = {pool.submit(self.fetch, wanted[i]): i for i in todo}
                for future in progress(as_completed(futures), what, total=len(futures)):
                    i = futures[future]
                    try:
                        results[i] = future.result()
                    except DownloadError as exc:
                        results[i] = exc
        return results  # type: ignore[return-value]

    def read_all(self, urls: Sequence[str]) -> list[bytes | DownloadError]:
        """``read`` for each URL, ``workers`` at a time; a failure is returned, not raised."""
        results: list[bytes | DownloadError | None] = [None] * len(urls)
        if not urls:
            return []
        with ThreadPoolExecutor(max_workers=min(self.settings.workers, len(urls))) as pool:
            futures = {pool.submit(self.read, url): i for i, url in enumerate(urls)}
            for future in as_completed(futures):
                try:
                    results[futures[future]] = future.result()
                except DownloadError as exc:
                    results[futures[future]] = exc
        return results  # type: ignore[return-value]
