"""Users and their bearer tokens.

A token is shown once, when its user is created; the database keeps only its sha256, so a
leaked table gives no usable token. Lookups go by that hash (an indexed column) and the
stored hash is compared again in constant time. A small in-process cache spares the
database one query per authenticated request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from sqlalchemy import select

from pipelines.db import transaction
from pipelines.models import User

#: Prefix of every token, so a leaked one is easy to recognise in logs and secret scanners.
TOKEN_PREFIX = "cvy_"
#: s a token lookup is trusted before the database is asked again.
CACHE_SECONDS = 30.0
#: Most tokens kept in the lookup cache.
CACHE_SIZE = 10_000


@dataclass(frozen=True)
class NewUser:
    """A created user and its token (shown once, never stored)."""

    id: str
    name: str
    token: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_user(name: str) -> NewUser:
    """Create a user and return it with a fresh bearer token."""
    name = name.strip()
    if not name:
        raise ValueError("a user needs a name")
    token = _new_token()
    with transaction() as session:
        user = User(name=name[:200], token_hash=hash_token(token))
        session.add(user)
        session.flush()
        return NewUser(id=user.id, name=user.name, token=token)


_cache: dict[str, tuple[str, float]] = {}
_cache_lock = threading.Lock()


def user_for_token(token: str) -> str | None:
    """The id of the user holding ``token``, or None for an unknown token."""
    if not token or len(token) > 200:
        return None
    digest = hash_token(token)
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(digest)
    if hit is not None and hit[1] > now:
        return hit[0]
    with transaction() as session:
        row = session.execute(select(User.id, User.token_hash).where(User.token_hash == digest)).one_or_none()
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    with _cache_lock:
        if len(_cache) >= CACHE_SIZE:
            _cache.clear()
        _cache[digest] = (row.id, now + CACHE_SECONDS)
    return row.id


def forget_cached_tokens() -> None:
    """Drop the lookup cache (tests that swap databases)."""
    with _cache_lock:
        _cache.clear()


def user_count() -> int:
    """How many users exist."""
    from sqlalchemy import func

    with transaction() as session:
        return int(session.scalar(select(func.count()).select_from(User)) or 0)


def first_user_name() -> str | None:
    """The name of the oldest user, or None when there is none."""
    with transaction() as session:
        return session.scalar(select(User.name).order_by(User.created_at, User.id).limit(1))


def replace_token(name: str) -> NewUser | None:
    """Give the (oldest) user called ``name`` a fresh token; the old one stops working. None when no
    user has that name. (A user holds one token: only its hash is kept, so it cannot be shown again.)"""
    token = _new_token()
    with transaction() as session:
        user = session.scalars(select(User).where(User.name == name.strip())
                               .order_by(User.created_at, User.id).limit(1)).one_or_none()
        if user is None:
            return None
        user.token_hash = hash_token(token)
        found = NewUser(id=user.id, name=user.name, token=token)
    forget_cached_tokens()
    return found
