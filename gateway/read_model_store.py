"""The read model's in-memory table of pull requests, kept in id order for paging.

Pure data structure (no Kafka, no asyncio), owned by :class:`gateway.read_model.ReadModel`
and used from the event loop only.
"""

from __future__ import annotations

import base64
import binascii
import bisect

from prgate.v1.pull_request_pb2 import PullRequest

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# Tokens carry a marker so a token from elsewhere (or a typo) is refused, not misread.
_TOKEN_MARKER = b"prgate.list.v1:"
# Up to this many new ids are inserted one by one when a listing needs the order; more are
# appended and the whole list re-sorted (timsort merges the two sorted runs in linear time).
_INSERT_ONE_BY_ONE = 64


def encode_page_token(last_id: str) -> str:
    """An opaque token: urlsafe base64 (unpadded) of a marker and the last id returned."""
    return base64.urlsafe_b64encode(_TOKEN_MARKER + last_id.encode()).rstrip(b"=").decode()


def decode_page_token(token: str) -> str:
    """The last id of the previous page; raises ValueError for a malformed token."""
    try:
        raw = token.encode("ascii")
        padded = raw + b"=" * (-len(raw) % 4)
        data = base64.b64decode(padded, altchars=b"-_", validate=True)
        if not data.startswith(_TOKEN_MARKER):
            raise ValueError("not a page token of this service")
        return data[len(_TOKEN_MARKER) :].decode("utf-8")
    except (UnicodeError, binascii.Error) as exc:
        raise ValueError(f"malformed page token: {exc}") from exc


class PullRequestStore:
    """Pull requests by id, plus the sorted ids for ordered, resumable listing."""

    def __init__(self) -> None:
        self._by_id: dict[str, PullRequest] = {}
        # Sorted ids, plus new ids not merged in yet. Inserting each new id in order is a
        # memmove of the whole list, quadratic over a catch-up: 1M random ids took minutes
        # (prgate bench, restore). New ids wait here until a listing needs the order.
        self._ids: list[str] = []
        self._unsorted: list[str] = []

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, pull_request_id: str) -> PullRequest | None:
        return self._by_id.get(pull_request_id)

    def put(self, entity: PullRequest) -> None:
        """Insert or replace (the caller decides whether the version is newer)."""
        key = entity.pull_request_id
        if key not in self._by_id:
            self._unsorted.append(key)
        self._by_id[key] = entity

    def _sorted_ids(self) -> list[str]:
        if self._unsorted:
            if len(self._unsorted) <= _INSERT_ONE_BY_ONE:
                for key in self._unsorted:
                    bisect.insort(self._ids, key)
            else:
                self._ids.extend(self._unsorted)
                self._ids.sort()  # timsort: sorts the new run, then merges two runs
            self._unsorted.clear()
        return self._ids

    def remove(self, pull_request_id: str) -> bool:
        """Drop an entity; True if it was there."""
        if self._by_id.pop(pull_request_id, None) is None:
            return False
        ids = self._sorted_ids()
        index = bisect.bisect_left(ids, pull_request_id)
        del ids[index]
        return True

    def list(
        self,
        *,
        repository: str = "",
        status: int = 0,
        page_size: int = DEFAULT_PAGE_SIZE,
        page_token: str = "",
    ) -> tuple[list[PullRequest], str]:
        """One page ordered by id, filtered by repository and status (empty/0 = any).

        ``page_size`` 0 means the default; it is capped at MAX_PAGE_SIZE; negative is a
        ValueError. The returned token is "" on the last page.
        """
        if page_size < 0:
            raise ValueError(f"page_size must not be negative, got {page_size}")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        ids = self._sorted_ids()
        start = 0
        if page_token:
            start = bisect.bisect_right(ids, decode_page_token(page_token))
        page: list[PullRequest] = []
        for index in range(start, len(ids)):
            entity = self._by_id[ids[index]]
            if repository and entity.repository != repository:
                continue
            if status and entity.status != status:
                continue
            if len(page) == size:
                # One more match exists, so there is a next page.
                return page, encode_page_token(page[-1].pull_request_id)
            page.append(entity)
        return page, ""
