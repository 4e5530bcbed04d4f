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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
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


def _network_failure(exc: BaseException, timeout: float) -> _Transient:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return _Transient(f"no answer within {timeout:g} s")
    detail = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
    return _Transient(f"the connection failed ({detail})")


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

    def _attempt(self, url: str, target: Path | None) -> bytes:
        """One GET into ``target`` (atomically) or into memory. Raises _Transient or DownloadError."""
        timeout = self.settings.timeout
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "*/*"})
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            reason = f"the server answered {exc.code} ({exc.reason})"
            if exc.code in RETRY_STATUS:
                raise _Transient(reason) from None
            raise DownloadError(url, reason, status=exc.code) from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, str):  # not a network failure: the URL itself is unusable
                raise DownloadError(url, f"cannot fetch this URL ({exc.reason})") from None
            raise _network_failure(exc, timeout) from None
        except ValueError as exc:  # http.client.InvalidURL and friends
            raise DownloadError(url, f"not a valid URL ({exc})") from None
        except (OSError, http.client.HTTPException) as exc:
            raise _network_failure(exc, timeout) from None

        with response:
            announced = response.headers.get("Content-Length", "")
            expected = int(announced) if announced.strip().isdigit() else None

            def chunks() -> Iterator[bytes]:
                received = 0
                while True:
                    try:
                        chunk = response.read(CHUNK)
                    except (OSError, http.client.HTTPException) as exc:
                        raise _network_failure(exc, timeout) from None
                    if not chunk:
                        break
                    received += len(chunk)
                    yield chunk
                if expected is not None and received != expected:
                    raise _Transient(f"the connection closed after {received:,} of {expected:,} bytes")

            if target is None:
                return b"".join(chunks())
            try:
                write_atomically(target, lambda handle: handle.writelines(chunks()))
            except OSError as exc:
                raise BadInputError(
                    f"cannot write a download into the cache folder ({exc.strerror or exc})", target.parent
                ) from None
            return b""

    def _with_retries(self, url: str, target: Path | None) -> bytes:
        if urlsplit(url).scheme.lower() not in ("http", "https"):
            raise DownloadError(url, "only http:// and https:// URLs can be fetched")
        attempts = self.settings.attempts
        for attempt in range(1, attempts + 1):
            try:
                return self._attempt(url, target)
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
                self._with_retries(url, target)
                return target
            except DownloadError as exc:
                last = exc
                if exc.status is None or not 400 <= exc.status < 500:
                    raise
        assert last is not None
        raise last

    def fetch_all(self, wanted: Sequence[Sequence[str]], what: str = "Downloading") -> list[Path | DownloadError]:
        """``fetch`` for each list of URLs, ``workers`` at a time; a failure is returned, not raised.

        A file wanted twice is fetched once.
        """
        results: list[Path | DownloadError] = [self.cached_path(urls[0]) for urls in wanted]
        todo: dict[tuple[str, ...], list[int]] = {}
        for i, path in enumerate(results):
            if not path.is_file():
                todo.setdefault(tuple(wanted[i]), []).append(i)
        if todo:
            pool = ThreadPoolExecutor(max_workers=min(self.settings.workers, len(todo)))
            try:
                futures = {pool.submit(self.fetch, urls): indices for urls, indices in todo.items()}
                for future in progress(as_completed(futures), what, total=len(futures)):
                    try:
                        result: Path | DownloadError = future.result()
                    except DownloadError as exc:
                        result = exc
                    for i in futures[future]:
                        results[i] = result
            finally:  # on an interrupt, files not started are not fetched; finished ones stay cached
                pool.shutdown(wait=True, cancel_futures=True)
        return results

    def read_all(self, urls: Sequence[str]) -> list[bytes | DownloadError]:
        """``read`` for each URL, ``workers`` at a time; a failure is returned, not raised."""
        results: list[bytes | DownloadError | None] = [None] * len(urls)
        if not urls:
            return []
        pool = ThreadPoolExecutor(max_workers=min(self.settings.workers, len(urls)))
        try:
            futures = {pool.submit(self.read, url): i for i, url in enumerate(urls)}
            for future in as_completed(futures):
                try:
                    results[futures[future]] = future.result()
                except DownloadError as exc:
                    results[futures[future]] = exc
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return results  # type: ignore[return-value]
