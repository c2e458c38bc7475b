"""The API key format: ``hk_<env>_<32 base62 random><6 base62 CRC32>``.

The checksum lets the gateway turn away a mistyped or truncated key without a
database lookup, and lets secret scanners tell a real key from a look-alike.
"""

from __future__ import annotations

import re
import secrets
import zlib
from dataclasses import dataclass

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
ENVIRONMENTS = ("live", "test")
RANDOM_LENGTH = 32
CHECKSUM_LENGTH = 6
# Characters of the random part shown in listings: enough to tell keys apart at a glance.
DISPLAY_LENGTH = 6

KEY_PATTERN = re.compile(
    rf"^hk_(?P<env>live|test)_(?P<random>[0-9A-Za-z]{{{RANDOM_LENGTH}}})"
    rf"(?P<checksum>[0-9A-Za-z]{{{CHECKSUM_LENGTH}}})\Z"
)
# Anything that looks like an attempt at a key, for spotting keys where they must not be.
KEY_LIKE = re.compile(r"hk_(?:live|test)_[0-9A-Za-z]{8,}")


class MalformedKeyError(ValueError):
    """The text is not a well-formed Hokusai API key; the message says what is wrong."""


@dataclass(frozen=True)
class ParsedKey:
    env: str
    display_prefix: str


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, rest = divmod(number, 62)
        digits.append(ALPHABET[rest])
    return "".join(reversed(digits)).rjust(width, "0")


def checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECKSUM_LENGTH)


def generate_key(env: str = "live") -> str:
    """A new random key for ``env`` (``live`` or ``test``)."""
    if env not in ENVIRONMENTS:
        raise ValueError(f"env must be one of {', '.join(ENVIRONMENTS)}, not {env!r}")
    random_part = "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LENGTH))
    body = f"hk_{env}_{random_part}"
    return body + checksum(body)


def parse_key(key: str) -> ParsedKey:
    """Check the shape and checksum of ``key``; raise :class:`MalformedKeyError` if wrong."""
    match = KEY_PATTERN.match(key)
    if match is None:
        if not key.startswith(("hk_live_", "hk_test_")):
            raise MalformedKeyError(
                "the API key does not start with hk_live_ or hk_test_; "
                "copy the whole key as `hokusai keys create` printed it"
            )
        rest = key[len("hk_live_") :]
        stray = next((c for c in rest if c not in ALPHABET), None)
        if stray is not None:
            raise MalformedKeyError(
                f"the API key contains {stray!r}, which is not a letter or digit; "
                "copy the whole key as `hokusai keys create` printed it, without quotes or spaces"
            )
        expected = RANDOM_LENGTH + CHECKSUM_LENGTH
        raise MalformedKeyError(
            f"the API key has the wrong length (expected hk_<env>_ and {expected} letters or "
            f"digits, got {len(rest)}); "
            + ("it may be truncated" if len(rest) < expected else "it has extra characters")
        )
    if checksum(key[:-CHECKSUM_LENGTH]) != match["checksum"]:
        raise MalformedKeyError(
            "the API key's checksum does not match: it was mistyped or altered; "
            "copy it again from where it was issued"
        )
    return ParsedKey(env=match["env"], display_prefix=display_prefix(key))


def display_prefix(key: str) -> str:
    """The part of a key that is safe to show: ``hk_live_AbCdEf``."""
    env_end = key.index("_", 3) + 1
    return key[: env_end + DISPLAY_LENGTH]
