"""What a tag is: ``KEY=VALUE`` on a snapshot (``--tag``, a backup policy's ``tags``).

Owns the rule both the CLI and the config check, so that a tag refused by one
is refused by the other (``dr backup`` passes its tags on to every mover Job's
``dr mover backup --tag``: a tag the mover refused would fail each volume of a
backup that had already started).

- The key has the syntax of a Kubernetes label key: an optional DNS-subdomain
  prefix and ``/``, then a name of at most 63 characters, alphanumeric at both
  ends with ``-``, ``_`` and ``.`` between. dr's own tags are of that form
  (``dr.dev/pvc``), it is the syntax the users of a Kubernetes tool know, and it
  keeps a tag usable as a label or annotation key (Velero's backup labels are
  labels) should tags ever be copied onto objects. It also keeps ``=`` and
  ``,`` out of keys, so that ``k=v,k2=v2`` listings read one way.
- The value is any one line of text: not a label value (at most 63 characters
  of the same alphabet), since dr's own tags hold PVC names of up to 253
  characters and users write "team=platform ops"; but not empty, and without
  control or bidi characters (``dr.printable``), which could not be listed as
  they are.
"""

from __future__ import annotations

import re

from dr.kube.selectors import LABEL_NAME, LABEL_PREFIX
from dr.printable import printable

# The label key's parts as label selectors have them (dr.kube.selectors imports nothing of
# the Kubernetes client): one rule for both.
_NAME = re.compile(LABEL_NAME)
_DNS_SUBDOMAIN = re.compile(LABEL_PREFIX)
_PREFIX_MAX = 253

KEY_RULE = "a label key: [PREFIX/]NAME, NAME up to 63 of A-Z a-z 0-9 - _ . alphanumeric at both ends"


def tag_problem(key: str, value: str) -> str | None:
    """Why ``key=value`` is no tag, or None when it is one."""
    if not key:
        return "empty key"
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > _PREFIX_MAX or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return f"key '{printable(key)}' is not {KEY_RULE}, PREFIX a DNS name"
    if not _NAME.fullmatch(name):
        return f"key '{printable(key)}' is not {KEY_RULE}"
    if not value:
        return f"key '{key}': empty value"
    if printable(value) != value:
        return f"key '{key}': a control character in the value '{printable(value)}'"
    return None


def check_tags(tags: dict[str, str]) -> dict[str, str]:
    """``tags`` when each is a tag (a backup policy's ``tags``), ValueError naming the first that is not."""
    for k, v in tags.items():
        problem = tag_problem(k, v)
        if problem:
            raise ValueError(problem)
    return tags
