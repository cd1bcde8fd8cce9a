"""Users and their bearer tokens: created, replaced and revoked.

A token is shown once, when it is made; the database keeps only its sha256, so a leaked table
gives no usable token. Lookups go by that hash (an indexed column) and the stored hash is
compared again in constant time.

Each user has one token at a time and a *token generation*, raised each time the token is
replaced (:func:`rotate_token`) or revoked (:func:`revoke_tokens`); signed grants and file links
carry the generation they were made under, so they die with the token.

A small in-process cache spares the database one query per authenticated request. It may never
outlive a revocation: a revocation is published on Redis (the broker's), every process listens
and drops its cache at once, and a process trusts its cache only while it is subscribed (a lost
connection drops the cache and stops caching until it is back). Without Redis (the StubBroker of
the tests) a revocation clears the revoking process's cache only.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import func, or_, select

from conveyor.errors import UserNotFound
from pipelines.store.db import transaction
from pipelines.store.models import User

logger = logging.getLogger(__name__)

#: Prefix of every token, so a leaked one is easy to recognise in logs and secret scanners.
TOKEN_PREFIX = "cvy_"
#: s a token lookup is trusted before the database is asked again (while revocations are heard).
CACHE_SECONDS = 30.0
#: Most tokens kept in the lookup cache.
CACHE_SIZE = 10_000
#: The Redis channel revocations are published on; any message clears every process's cache.
REVOKED_CHANNEL = "conveyor:auth:revoked"
#: s between pings of the revocation subscription; a failed ping drops the cache.
LISTEN_PING_SECONDS = 5.0


@dataclass(frozen=True)
class NewUser:
    """A user and its new token (shown once, never stored)."""

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


def _one_user(session: Any, name_or_id: str) -> User:
    users = list(session.scalars(
        select(User).where(or_(User.id == name_or_id, User.name == name_or_id)).with_for_update().limit(2)))
    if not users:
        raise UserNotFound(f"no user is named {name_or_id!r}")
    if len(users) > 1:
        raise UserNotFound(f"several users are named {name_or_id!r}; give the user's id instead")
    return users[0]


def rotate_token(name_or_id: str) -> NewUser:
    """Give the user a new token; the old one, and grants made with it, stop working everywhere.

    Raises:
      UserNotFound: no user, or several, by that name (an id is unique).
    """
    token = _new_token()
    with transaction() as session:
        user = _one_user(session, name_or_id)
        user.token_hash = hash_token(token)
        user.token_generation = (user.token_generation or 1) + 1
        found = NewUser(id=user.id, name=user.name, token=token)
    announce_revocation(found.id)
    return found


def revoke_tokens(name_or_id: str) -> str:
    """Revoke the user's token (and grants made with it) without issuing another; returns the user's id.

    The stored hash becomes that of a random value nobody was given, so no token matches it.

    Raises:
      UserNotFound: no user, or several, by that name.
    """
    with transaction() as session:
        user = _one_user(session, name_or_id)
        user.token_hash = hash_token(secrets.token_urlsafe(48))
        user.token_generation = (user.token_generation or 1) + 1
        user_id = user.id
    announce_revocation(user_id)
    return user_id


# --- the lookup cache and its invalidation ------------------------------------------------------

V = TypeVar("V")


class _RevocableCache(Generic[V]):
    """Answers read from the database, trusted :data:`CACHE_SECONDS` while revocations are heard.

    Every clearing raises an epoch: a read that started before one may not fill the cache after it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[V, float]] = {}  #: key -> (answer, expiry)
        self._epoch = 0

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._epoch += 1

    def get(self, key: str, load: Callable[[], V | None]) -> V | None:
        """The cached answer for ``key``, or ``load()``'s (cached when it is not None and allowed)."""
        now = time.monotonic()
        caching = _listener.caching_allowed()
        with self._lock:
            hit = self._entries.get(key) if caching else None
            epoch = self._epoch
        if hit is not None and hit[1] > now:
            return hit[0]
        value = load()
        if value is not None:
            with self._lock:
                if caching and epoch == self._epoch:  # no revocation was heard while the database was read
                    if len(self._entries) >= CACHE_SIZE:
                        self._entries.clear()
                    self._entries[key] = (value, now + CACHE_SECONDS)
        return value


_users_by_token: _RevocableCache[tuple[str, int]] = _RevocableCache()  #: token sha256 -> (user id, generation)
_generations: _RevocableCache[int] = _RevocableCache()  #: user id -> token generation


def forget_cached_tokens() -> None:
    """Drop the lookup cache (on a revocation, a lost subscription, and in tests that swap databases)."""
    _users_by_token.clear()
    _generations.clear()


def _redis() -> Any:
    from actors.broker.build import current_broker, redis_client

    return redis_client(current_broker())


class _RevocationListener:
    """A daemon thread subscribed to :data:`REVOKED_CHANNEL` that clears the cache on each message."""

    def __init__(self) -> None:
        self.subscribed = threading.Event()
        self._started = False
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def caching_allowed(self) -> bool:
        """Whether this process may trust its cache: Redis revocations are heard, or there is no Redis."""
        client = _redis()
        if client is None:
            return True  # one process (StubBroker): revocations clear the cache directly
        self._start(client)
        return self.subscribed.is_set()

    def _start(self, client: Any) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        self._thread = threading.Thread(target=self._run, args=(client,), name="conveyor-revocations", daemon=True)
        self._thread.start()
        # Before the embedded Redis decides at exit whether others still use it (exit hooks run last
        # registered first): a listener that reconnected would keep that server running.
        atexit.register(self.stop)

    def stop(self) -> None:
        """Stop listening and close the channel's connection (at process exit)."""
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)

    def _run(self, client: Any) -> None:
        while not self._stopping.is_set():
            pubsub = client.pubsub()
            try:
                pubsub.subscribe(REVOKED_CHANNEL)
                last_ping = time.monotonic()
                while not self._stopping.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None:
                        if message["type"] == "subscribe":
                            forget_cached_tokens()  # anything revoked while not listening
                            self.subscribed.set()
                        elif message["type"] == "message":
                            forget_cached_tokens()
                    elif time.monotonic() - last_ping > LISTEN_PING_SECONDS:
                        pubsub.ping()
                        last_ping = time.monotonic()
            except Exception:
                self.subscribed.clear()
                forget_cached_tokens()
                if not self._stopping.is_set():
                    logger.warning("Lost the token revocation channel; not caching tokens until it is back",
                                   exc_info=True)
                    self._stopping.wait(1.0)
            finally:
                try:
                    pubsub.close()
                except Exception:  # noqa: S110 - the connection is gone already
                    pass


_listener = _RevocationListener()


def announce_revocation(user_id: str) -> None:
    """Tell every process to drop its token cache (after the revocation committed)."""
    forget_cached_tokens()
    client = _redis()
    if client is None:
        return
    try:
        client.publish(REVOKED_CHANNEL, user_id)
    except Exception:
        # Listeners that lost Redis too stopped caching; say so, since one that did not may hold the token 30 s.
        logger.error("Could not publish the revocation of user %s; caches end within %.0f s",
                     user_id, CACHE_SECONDS)


def user_for_token(token: str) -> str | None:
    """The id of the user holding ``token``, or None for an unknown or revoked token."""
    found = _lookup(token)
    return found[0] if found else None


def _lookup(token: str) -> tuple[str, int] | None:
    if not token or len(token) > 200:
        return None
    digest = hash_token(token)

    def read() -> tuple[str, int] | None:
        with transaction() as session:
            row = session.execute(select(User.id, User.token_hash, User.token_generation)
                                  .where(User.token_hash == digest)).one_or_none()
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            return None
        return row.id, row.token_generation

    return _users_by_token.get(digest, read)


def token_generation(user_id: str) -> int | None:
    """The user's current token generation (None for no such user); grants carry the one they were made under."""

    def read() -> int | None:
        with transaction() as session:
            return session.scalar(select(User.token_generation).where(User.id == user_id))

    return _generations.get(user_id, read)


def user_count() -> int:
    """How many users exist."""
    with transaction() as session:
        return int(session.scalar(select(func.count()).select_from(User)) or 0)


def first_user_name() -> str | None:
    """The name of the oldest user, or None when there is none."""
    with transaction() as session:
        return session.scalar(select(User.name).order_by(User.created_at, User.id).limit(1))
