"""Paginators are state machines: fed responses, they find the next page or refuse to loop."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from partnersync.connectors.http.pagination import (
    GraphQLCursorPaginator,
    LinkHeaderPaginator,
    NextTokenPaginator,
    PageNumberPaginator,
    RequestSpec,
    TimeWindowPaginator,
    paginate,
)
from partnersync.errors import BadResponseError, PaginationLoopError

BASE = "https://shop.example/admin/api/2026-10/orders.json"

pytestmark = pytest.mark.anyio


def link_response(link: str | None) -> httpx.Response:
    headers = {"Link": link} if link else {}
    return httpx.Response(200, headers=headers, request=httpx.Request("GET", BASE + "?limit=250"))


def test_link_header_follows_next_even_when_previous_comes_first() -> None:
    pager = LinkHeaderPaginator()
    request = RequestSpec("GET", BASE, params={"limit": 250, "status": "any"})
    pager.init_request(request)
    pager.update_state(
        link_response(
            f'<{BASE}?page_info=prev1&limit=250>; rel="previous", '
            f'<{BASE}?page_info=next1&limit=250&fields=id,title>; rel="next"'
        ),
        [],
    )
    assert pager.has_next_page
    pager.update_request(request)
    assert request.url == f"{BASE}?page_info=next1&limit=250&fields=id,title"
    # Shopify rejects other filters next to page_info: they must be gone.
    assert request.params == {}


def test_link_header_resolves_relative_urls_and_stops_without_next() -> None:
    pager = LinkHeaderPaginator()
    request = RequestSpec("GET", BASE)
    pager.init_request(request)
    pager.update_state(
        link_response('</admin/api/2026-10/orders.json?page_info=abc>; rel="next"'), []
    )
    pager.update_request(request)
    assert request.url == "https://shop.example/admin/api/2026-10/orders.json?page_info=abc"
    pager.update_state(link_response(f'<{BASE}?page_info=p>; rel="previous"'), [])
    assert not pager.has_next_page


def test_link_header_refuses_a_repeated_cursor() -> None:
    pager = LinkHeaderPaginator()
    pager.init_request(RequestSpec("GET", BASE))
    pager.update_state(link_response(f'<{BASE}?page_info=same>; rel="next"'), [])
    with pytest.raises(PaginationLoopError):
        pager.update_state(link_response(f'<{BASE}?page_info=same>; rel="next"'), [])


def test_page_number_stops_on_short_page() -> None:
    pager = PageNumberPaginator(page_size=2)
    request = RequestSpec("GET", "/products")
    pager.init_request(request)
    assert request.params == {"page": 1, "per_page": 2}
    pager.update_state(httpx.Response(200), [1, 2])
    pager.update_request(request)
    assert request.params["page"] == 2
    pager.update_state(httpx.Response(200), [3])
    assert not pager.has_next_page


def test_page_number_uses_total_pages_header() -> None:
    pager = PageNumberPaginator(page_size=2, total_pages_header="X-WP-TotalPages")
    pager.init_request(RequestSpec("GET", "/products"))
    pager.update_state(httpx.Response(200, headers={"X-WP-TotalPages": "1"}), [1, 2])
    assert not pager.has_next_page


def test_page_number_rejects_non_list_body() -> None:
    pager = PageNumberPaginator(items_path="items")
    pager.init_request(RequestSpec("GET", "/x"))
    with pytest.raises(BadResponseError):
        pager.update_state(httpx.Response(200), {"items": "nope"})


def test_next_token_in_body_and_loop_detection() -> None:
    pager = NextTokenPaginator(token_path="payload.NextToken", param="NextToken", in_body=True)
    request = RequestSpec("POST", "/orders", json={"MarketplaceIds": ["X"]})
    pager.init_request(request)
    pager.update_state(httpx.Response(200), {"payload": {"NextToken": "t1"}})
    pager.update_request(request)
    assert request.json == {"MarketplaceIds": ["X"], "NextToken": "t1"}
    with pytest.raises(PaginationLoopError):
        pager.update_state(httpx.Response(200), {"payload": {"NextToken": "t1"}})


def test_graphql_cursor_sets_after_and_requires_end_cursor() -> None:
    pager = GraphQLCursorPaginator(page_info_path="data.products.pageInfo")
    request = RequestSpec("POST", "/graphql.json", json={"query": "q", "variables": {"first": 5}})
    pager.init_request(request)
    pager.update_state(
        httpx.Response(200),
        {"data": {"products": {"pageInfo": {"hasNextPage": True, "endCursor": "c1"}}}},
    )
    pager.update_request(request)
    assert request.json == {"query": "q", "variables": {"first": 5, "after": "c1"}}
    with pytest.raises(BadResponseError):
        pager.update_state(
            httpx.Response(200), {"data": {"products": {"pageInfo": {"hasNextPage": True}}}}
        )
    with pytest.raises(BadResponseError):
        pager.update_state(httpx.Response(200), {"data": {}})


def test_time_windows_walk_each_window_with_inner_pages() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    windows: list[tuple[datetime, datetime]] = []

    def set_window(request: RequestSpec, begin: datetime, end: datetime) -> None:
        windows.append((begin, end))
        request.params.update(start=begin.isoformat(), end=end.isoformat())

    pager = TimeWindowPaginator(
        start=start,
        end=start + timedelta(days=3),
        window=timedelta(days=1),
        inner=NextTokenPaginator(token_path="next", param="token"),
        set_window=set_window,
    )
    request = RequestSpec("GET", "/orders", params={"status": "all"})
    bodies: list[dict[str, Any]] = [{"next": "a"}, {}, {}, {}]
    pages = 0
    pager.init_request(request)
    for body in bodies:
        pager.update_state(httpx.Response(200), body)
        pages += 1
        if not pager.has_next_page:
            break
        pager.update_request(request)
    assert pages == 4  # two pages in the first window, one in each other
    assert [w[0].day for w in windows] == [1, 2, 3]
    assert windows[-1][1] == start + timedelta(days=3)
    assert "token" not in request.params  # a new window starts without the old token


async def test_paginate_drives_fetch_until_the_last_page() -> None:
    pages = iter(
        [
            {"data": {"x": {"pageInfo": {"hasNextPage": True, "endCursor": "a"}}}},
            {"data": {"x": {"pageInfo": {"hasNextPage": True, "endCursor": "b"}}}},
            {"data": {"x": {"pageInfo": {"hasNextPage": False, "endCursor": "c"}}}},
        ]
    )
    seen_after: list[Any] = []

    async def fetch(request: RequestSpec) -> tuple[httpx.Response, Any]:
        seen_after.append((request.json or {}).get("variables", {}).get("after"))
        return httpx.Response(200), next(pages)

    request = RequestSpec("POST", "/g", json={"query": "q", "variables": {}})
    bodies = [
        body
        async for _, body in paginate(
            fetch, request, GraphQLCursorPaginator(page_info_path="data.x.pageInfo")
        )
    ]
    assert len(bodies) == 3
    assert seen_after == [None, "a", "b"]


def test_modified_keyset_moves_on_by_time_and_pages_through_one_crowded_second() -> None:
    from datetime import UTC, datetime

    from partnersync.connectors.http.pagination import ModifiedKeyset

    def at(second: int) -> datetime:
        return datetime(2026, 1, 1, 0, 0, second, tzinfo=UTC)

    walk = ModifiedKeyset(at(0))
    ident, stamp = (lambda r: r[0]), (lambda r: r[1])
    fresh, more = walk.take([("a", at(1)), ("b", at(5))], ident, stamp, 2)
    assert (fresh, more, walk.after, walk.page) == ([("a", at(1)), ("b", at(5))], True, at(5), 1)
    # Asked again from second 5: "b" comes back as a tie and is dropped.
    fresh, more = walk.take([("b", at(5)), ("c", at(5))], ident, stamp, 2)
    assert (fresh, more, walk.after, walk.page) == ([("c", at(5))], True, at(5), 2)
    # A full page all at one second: the next page of that second, nothing read twice.
    fresh, more = walk.take([("d", at(5))], ident, stamp, 2)
    assert (fresh, more) == ([("d", at(5))], False)
