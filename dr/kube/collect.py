"""Reading objects: paginated lists as raw JSON pages, and single gets.

Lists are fetched ``limit`` objects at a time (``continue`` tokens) and
yielded page by page, so a caller that streams each object onward holds at
most one page in memory however many objects the type has. Items of a list
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
    while True:
        query = dict(base)
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
