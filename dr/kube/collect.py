"""Reading objects: paginated lists as raw JSON pages, and single gets.

Lists are fetched at most ``limit`` objects at a time (``continue`` tokens),
fewer when the objects are large (``PAGE_BYTES``), and yielded page by page,
so a caller that streams each object onward holds at most one page in memory
however many objects the type has and however large they are. Items of a list
carry no ``apiVersion``/``kind`` for built-in types; they are filled in here
so every object dict is self-describing. Each page is a ``Page``: a list that
also says whether it is the last one.

A ``continue`` token can expire (410 Gone) when a list takes longer than the
server keeps its snapshot (etcd compaction, ~5 minutes). The server then
offers a fresh token that continues from the same position against current
data; we take it and report a warning (the list is no longer one consistent
snapshot) rather than restarting and emitting duplicates.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from dr.kube.client import ApiError, KubeClient, error_from_response
from dr.kube.discovery import ApiResource

DEFAULT_PAGE_SIZE = 500
# About the most JSON one page may hold. Objects reach etcd's 1.5 MiB (Helm release Secrets, big
# ConfigMaps): 500 of them are a 750 MB response, parsed whole, in a Job limited to 1 GiB. The
# first page asks for FIRST_PAGE_SIZE objects (at most ~15 MiB); each next one for as many as
# fit in PAGE_BYTES at the last page's sizes, growing at most 4-fold a page up to ``limit``: small
# objects come 500 a page from the fourth page on. (A run of small objects right before large
# ones can still make one large page: the size of an object is known only once it is listed.)
PAGE_BYTES = 16 << 20
FIRST_PAGE_SIZE = 10


class Page(list[dict[str, Any]]):
    """One page of a list: its objects, and ``last`` — no page follows it (no ``continue`` token)."""

    last: bool = False


def iter_pages(
    kube: KubeClient,
    res: ApiResource,
    *,
    namespace: str | None = None,
    label_selector: str | None = None,
    field_selector: str | None = None,
    limit: int = DEFAULT_PAGE_SIZE,
    on_warning: Callable[[str], None] | None = None,
) -> Iterator[Page]:
    """Yield the objects of one type (in one namespace, or all) page by page; ``ApiError`` on failure."""
    path = res.collection_path(namespace)
    base: dict[str, str | int] = {"limit": limit}
    if label_selector:
        base["labelSelector"] = label_selector
    if field_selector:
        base["fieldSelector"] = field_selector
    token: str | None = None
    page_limit = min(limit, FIRST_PAGE_SIZE)
    while True:
        query = dict(base)
        query["limit"] = page_limit
        if token:
            query["continue"] = token
        status, data = kube.request("GET", path, query=query)
        if status == 410 and token:
            fresh = _continue_token(data)
            if fresh:
                if on_warning:
                    on_warning(
                        f"{res.group_resource}: list snapshot expired while paging; continued on current data"
                    )
                token = fresh
                continue
        if not 200 <= status < 300:
            raise error_from_response("GET", path, status, data)
        try:
            doc = json.loads(data)
        except ValueError as e:
            raise ApiError("GET", path, status, "BadResponse", f"response is not JSON: {e}") from None
        items: list[dict[str, Any]] = doc.get("items") or []
        for item in items:
            item.setdefault("apiVersion", res.api_version)
            item.setdefault("kind", res.kind)
        token = (doc.get("metadata") or {}).get("continue") or None
        if items:  # sized on the last page (objects of a kind come in runs: names sort together)
            page_limit = max(1, min(limit, 4 * page_limit, PAGE_BYTES * len(items) // len(data)))
        page = Page(items)
        page.last = not token
        yield page
        if not token:
            return


def _continue_token(data: bytes) -> str | None:
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    token = (doc.get("metadata") or {}).get("continue") if isinstance(doc, dict) else None
    return str(token) if token else None


def list_objects(
    kube: KubeClient,
    res: ApiResource,
    *,
    namespace: str | None = None,
    label_selector: str | None = None,
    limit: int = DEFAULT_PAGE_SIZE,
) -> Iterator[dict[str, Any]]:
    """Every object of one type, one at a time (pages fetched as needed)."""
    for page in iter_pages(kube, res, namespace=namespace, label_selector=label_selector, limit=limit):
        yield from page


def get_object(kube: KubeClient, res: ApiResource, namespace: str | None, name: str) -> dict[str, Any] | None:
    """One object, or ``None`` if it does not exist; ``ApiError`` for any other error."""
    path = res.object_path(namespace, name)
    status, data = kube.request("GET", path)
    if status == 404:
        return None
    if not 200 <= status < 300:
        raise error_from_response("GET", path, status, data)
    obj: dict[str, Any] = json.loads(data)
    return obj
