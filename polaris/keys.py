"""Hashing of secrets: charger keys (salted HMAC-SHA256) and people's passwords (argon2id);
constant-time checks of shared tokens."""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

CHARGER_KEY_MIN = 16
CHARGER_KEY_MAX = 40

_password_hasher = PasswordHasher()  # argon2id with the library's current defaults


def check_charger_key(key: str) -> str | None:
    """Why `key` is not acceptable as a charger's AuthorizationKey, or None if it is."""
    if not CHARGER_KEY_MIN <= len(key) <= CHARGER_KEY_MAX:
        return (
            f"a charger password must be {CHARGER_KEY_MIN} to {CHARGER_KEY_MAX} characters "
            f"(OCPP 1.6 AuthorizationKey), got {len(key)}"
        )
    if not key.isascii() or not key.isprintable():
        return "a charger password must be printable ASCII"
    return None


def hash_charger_key(key: str, salt: bytes | None = None) -> tuple[bytes, bytes]:
    """Return (salt, HMAC-SHA256(salt, key)). Fast on purpose: reconnect storms verify thousands."""
    salt = salt or secrets.token_bytes(16)
    return salt, hmac.new(salt, key.encode(), hashlib.sha256).digest()


def verify_charger_key(key: str, salt: bytes, expected: bytes) -> bool:
    return hmac.compare_digest(hash_charger_key(key, salt)[1], expected)


def hash_password(password: str) -> str:
    return _password_hasher.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    """Constant-time check; a missing hash still costs one verification (no timing oracle)."""
    if not password_hash:
        _burn(password)
        return False
    try:
        return _password_hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def password_needs_rehash(password_hash: str) -> bool:
    return _password_hasher.check_needs_rehash(password_hash)


@functools.cache
def _dummy_hash() -> str:
    return _password_hasher.hash(secrets.token_urlsafe(16))


def _burn(password: str) -> None:
    try:
        _password_hasher.verify(_dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        pass


def generate_password(nbytes: int = 18) -> str:
    """A random URL-safe secret (24 characters for the default 18 bytes) that starts with a
    letter or digit: secrets get pasted into shells, forms and command lines, where a leading
    `-` reads as an option (1 in 32 of token_urlsafe's outputs starts with `-`, 1 in 32 with `_`)."""
    while True:
        value = secrets.token_urlsafe(nbytes)
        if value[0].isalnum():
            return value


def generate_public_id() -> str:
    """Short, unambiguous id for QR codes: 10 characters of lowercase base32 (50 bits)."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return "".join(secrets.choice(alphabet) for _ in range(10))


def bearer_ok(expected: str | None, header: str | None) -> bool:
    """An optional bearer token (METRICS_TOKEN): unset lets anyone in; set, compared in constant time."""
    if not expected:
        return True
    scheme, _, value = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), expected.encode())
