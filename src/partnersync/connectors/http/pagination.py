"""Reusable pagination strategies, each a small state machine (STYLE habit 6, after dlt).

A paginator has three verbs and a stop condition:

* ``init_request(request)`` prepares the first request;
* ``update_state(response, body)`` reads where the next page is;
* ``update_request(request)`` points the request at it;
* ``has_next_page`` says whether there is one.

A paginator refuses to loop: a cursor (link, token, page) it has already followed raises
:class:`~partnersync.errors.PaginationLoopError`. They need no HTTP to test: feed them responses.

Example, a next-token API (this runs as a test)::

    >>> import httpx
    >>> pager = NextTokenPaginator(token_path="next", param="pageToken")
    >>> request = RequestSpec("GET", "/items")
    >>> pager.init_request(request)
    >>> pager.update_state(httpx.Response(200), {"items": [1], "next": "abc"})
    >>> pager.update_request(request)
    >>> request.params
    {'pageToken': 'abc'}
    >>> pager.update_state(httpx.Response(200), {"items": [2]})
    >>> pager.has_next_page
    False
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from partnersync.errors import BadResponseError, PaginationLoopError


@dataclass
class RequestSpec:
    """A request a paginator may rewrite: method, URL, query params and JSON body."""

    method: str
    url: str
    params: dict[str, Any] = field(default_factory=dict)
    json: dict[str, Any] | None = None


def _dig(body: Any, path: str | Sequence[str]) -> Any:
    steps = path.split(".") if isinstance(path, str) else list(path)
    value = body
    for step in steps:
        if not isinstance(value, dict):
            return None
        value = value.get(step)
    return value


class Paginator(ABC):
    """Base of pagination strategies; subclasses set ``has_next_page`` in ``update_state``."""

    def __init__(self) -> None:
        self.has_next_page = True
        self._seen: set[str] = set()

    def init_request(self, request: RequestSpec) -> None:
        """Prepare the first request (default: leave it as it is)."""
        self.has_next_page = True
        self._seen.clear()

    @abstractmethod
    def update_state(self, response: httpx.Response, body: Any) -> None:
        """Read the position of the next page from the last response."""

    @abstractmethod
    def update_request(self, request: RequestSpec) -> None:
        """Point ``request`` at the next page."""

    def _remember(self, cursor: str) -> None:
        if cursor in self._seen:
            raise PaginationLoopError(f"{type(self).__name__}: cursor {cursor[:80]!r} repeated")
        self._seen.add(cursor)


class LinkHeaderPaginator(Paginator):
    """RFC 8288 ``Link: <url>; rel="next"`` (Shopify REST, WooCommerce, GitHub).

    The next URL is used exactly as given; query params not in ``keep_params`` are dropped from
    the request, because Shopify rejects any filter next to ``page_info`` (only ``limit`` and
    ``fields`` may accompany it).
    """

    def __init__(self, keep_params: Sequence[str] = ("limit", "fields")) -> None:
        super().__init__()
        self.keep_params = tuple(keep_params)
        self._next_url: str | None = None

    def update_state(self, response: httpx.Response, body: Any) -> None:
        """Find ``rel="next"`` among the links, wherever it stands."""
        next_link = response.links.get("next", {}).get("url")
        if next_link:
            self._next_url = (
                str(response.request.url.join(next_link)) if _has_request(response) else next_link
            )
            self._remember(self._next_url)
        self.has_next_page = bool(next_link)

    def update_request(self, request: RequestSpec) -> None:
        """Follow the next link; its own query carries the cursor."""
        if self._next_url is None:
            return
        request.url = self._next_url
        request.params = {}


def _has_request(response: httpx.Response) -> bool:
    try:
        response.request  # noqa: B018 - property raises when unset
    except RuntimeError:
        return False
    return True


class PageNumberPaginator(Paginator):
    """``?page=N&per_page=M``; stops on a short page or at ``total_pages`` when reported."""

    def __init__(
        self,
        *,
        page_param: str = "page",
        size_param: str = "per_page",
        page_size: int = 100,
        first_page: int = 1,
        items_path: str | None = None,
        total_pages_header: str | None = None,
    ) -> None:
        super().__init__()
        self.page_param = page_param
        self.size_param = size_param
        self.page_size = page_size
        self.first_page = first_page
        self.items_path = items_path
        self.total_pages_header = total_pages_header
        self.page = first_page

    def init_request(self, request: RequestSpec) -> None:
        """Ask for the first page at the configured size."""
        super().init_request(request)
        self.page = self.first_page
        request.params[self.page_param] = self.page
        request.params[self.size_param] = self.page_size

    def update_state(self, response: httpx.Response, body: Any) -> None:
        """Another page exists unless this one was short or the reported total is reached."""
        items = _dig(body, self.items_path) if self.items_path else body
        if not isinstance(items, list):
            raise BadResponseError(f"expected a list of items at {self.items_path or 'body'}")
        total = response.headers.get(self.total_pages_header) if self.total_pages_header else None
        if total is not None and total.isdigit():
            self.has_next_page = self.page < int(total) + self.first_page - 1
        else:
            self.has_next_page = len(items) >= self.page_size
        if self.has_next_page:
            self.page += 1
            self._remember(str(self.page))

    def update_request(self, request: RequestSpec) -> None:
        """Set the page number."""
        request.params[self.page_param] = self.page


class NextTokenPaginator(Paginator):
    """A token in the body names the next page (Amazon SP-API ``NextToken``)."""

    def __init__(self, *, token_path: str, param: str, in_body: bool = False) -> None:
        super().__init__()
        self.token_path = token_path
        self.param = param
        self.in_body = in_body
        self._token: str | None = None

    def update_state(self, response: httpx.Response, body: Any) -> None:
        """Read the token; none means the last page."""
        token = _dig(body, self.token_path)
        self._token = str(token) if token else None
        if self._token:
            self._remember(self._token)
        self.has_next_page = self._token is not None

    def update_request(self, request: RequestSpec) -> None:
        """Send the token as a query param (or JSON field)."""
        if self._token is None:
            return
        if self.in_body:
            request.json = {**(request.json or {}), self.param: self._token}
        else:
            request.params[self.param] = self._token


class GraphQLCursorPaginator(Paginator):
    """Relay connections: ``pageInfo { hasNextPage endCursor }`` → variable ``after``."""

    def __init__(self, *, page_info_path: str | Sequence[str], variable: str = "after") -> None:
        super().__init__()
        self.page_info_path = page_info_path
        self.variable = variable
        self._cursor: str | None = None

    def update_state(self, response: httpx.Response, body: Any) -> None:
        """Follow ``endCursor`` while ``hasNextPage``."""
        info = _dig(body, self.page_info_path)
        if not isinstance(info, dict) or "hasNextPage" not in info:
            raise BadResponseError(f"response has no pageInfo at {self.page_info_path!r}")
        cursor = info.get("endCursor")
        self.has_next_page = bool(info["hasNextPage"])
        if self.has_next_page:
            if not isinstance(cursor, str) or not cursor:
                raise BadResponseError("hasNextPage is true but endCursor is empty")
            self._remember(cursor)
            self._cursor = cursor

    def update_request(self, request: RequestSpec) -> None:
        """Set the ``after`` variable."""
        body = request.json if request.json is not None else {}
        variables = dict(body.get("variables") or {})
        variables[self.variable] = self._cursor
        request.json = {**body, "variables": variables}


class TimeWindowPaginator(Paginator):
    """Walks ``[start, end)`` window by window; inside each window an inner paginator pages.

    For APIs that limit one query to a time range (Taobao, Pinduoduo): ``set_window`` writes the
    window into the request; when the inner paginator runs out, the next window starts.
    """

    def __init__(
        self,
        *,
        start: datetime,
        end: datetime,
        window: timedelta,
        inner: Paginator,
        set_window: Callable[[RequestSpec, datetime, datetime], None],
    ) -> None:
        super().__init__()
        if window <= timedelta(0):
            raise ValueError("window must be positive")
        self.start, self.end, self.window = start, end, window
        self.inner = inner
        self.set_window = set_window
        self.window_start = start
        self._base: RequestSpec | None = None
        self._advance_window = False

    @property
    def window_end(self) -> datetime:
        """End of the current window."""
        return min(self.window_start + self.window, self.end)

    def init_request(self, request: RequestSpec) -> None:
        """Start at the first window."""
        super().init_request(request)
        self._base = RequestSpec(request.method, request.url, dict(request.params), request.json)
        self.window_start = self.start
        self.inner.init_request(request)
        self.set_window(request, self.window_start, self.window_end)

    def update_state(self, response: httpx.Response, body: Any) -> None:
        """Continue inside the window, else move to the next one."""
        self.inner.update_state(response, body)
        self._advance_window = not self.inner.has_next_page
        self.has_next_page = self.inner.has_next_page or self.window_end < self.end

    def update_request(self, request: RequestSpec) -> None:
        """Next page of this window, or the first page of the next window."""
        if not self._advance_window:
            self.inner.update_request(request)
            return
        self.window_start = self.window_end
        assert self._base is not None
        request.url, request.params, request.json = (
            self._base.url,
            dict(self._base.params),
            self._base.json,
        )
        self.inner.init_request(request)
        self.set_window(request, self.window_start, self.window_end)


class ModifiedKeyset:
    """Walks a list sorted by modification time by *keyset*, not by page number alone.

    Page numbers shift when records change during a walk (an edited record jumps to the end and
    the one after it slides into a page already read). So each request asks for records
    modified from the newest time seen so far (``after``); the ties at that time, already read,
    are dropped by identity; only a page whose records all share one time moves on by
    ``page``. Used where a platform filters by modification time (WooCommerce
    ``modified_after``, Taobao ``start_modified``)::

        >>> from datetime import UTC, datetime
        >>> t = lambda s: datetime(2026, 1, 1, 0, 0, s, tzinfo=UTC)
        >>> walk = ModifiedKeyset(None)
        >>> rows = [{"id": 1, "at": t(1)}, {"id": 2, "at": t(2)}]
        >>> walk.take(rows, lambda r: r["id"], lambda r: r["at"], page_size=2)
        ([{'id': 1, 'at': ...}, {'id': 2, 'at': ...}], True)
        >>> (walk.after.second, walk.page)
        (2, 1)
        >>> walk.take([{"id": 2, "at": t(2)}], lambda r: r["id"], lambda r: r["at"], 2)
        ([], False)
    """

    def __init__(self, after: datetime | None) -> None:
        self.after = after
        self.page = 1
        self._seen: set[Any] = set()

    def take(
        self,
        rows: Sequence[Any],
        identity: Callable[[Any], Any],
        stamp: Callable[[Any], datetime],
        page_size: int,
    ) -> tuple[list[Any], bool]:
        """(the rows not read before, whether to ask again); moves ``after`` and ``page``."""
        fresh = [row for row in rows if identity(row) not in self._seen]
        if len(rows) < page_size:
            return fresh, False
        stamps = [stamp(row) for row in rows]
        newest = max(stamps)
        if self.after is None or newest > self.after:
            self.after, self.page = newest, 1
            self._seen = {identity(r) for r, s in zip(rows, stamps, strict=True) if s == newest}
        else:  # a full page within one time: the next page of the same time
            self.page += 1
            self._seen |= {identity(row) for row in rows}
        return fresh, True


async def paginate(
    fetch: Callable[[RequestSpec], Any],
    request: RequestSpec,
    paginator: Paginator,
) -> AsyncIterator[tuple[httpx.Response, Any]]:
    """Drive ``paginator`` with ``fetch`` (an async callable returning ``(response, body)``)."""
    paginator.init_request(request)
    while True:
        response, body = await fetch(request)
        paginator.update_state(response, body)
        yield response, body
        if not paginator.has_next_page:
            return
        paginator.update_request(request)
