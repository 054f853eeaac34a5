"""Text as bytes are read, decoded, measured and tokenised: the one definition every stage uses."""

from __future__ import annotations

import re

# HTML tags and entities left in scraped reviews (IMDB's "<br /><br />", "&amp;").
MARKUP = re.compile(r"<\s*/?\s*[A-Za-z][^<>]{0,80}>|&(?:[A-Za-z]+|#\d+|#x[0-9A-Fa-f]+);")
# Words (letters and digits of any script, with inner apostrophes: "isn't", "director's"), and ! and ?,
# which carry sentiment; other punctuation is dropped.
TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*|[!?]")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u00b4": "'", "`": "'"})
_CONTROL = bytes(range(32)).replace(b"\t", b"").replace(b"\n", b"").replace(b"\r", b"").replace(b"\f", b"")
SNIFF_BYTES = 8192


def is_binary(data: bytes) -> bool:
    """True for bytes that are not text in any 8-bit or UTF-8 encoding: NUL bytes (also UTF-16),
    or many control characters in the first 8 KiB."""
    head = data[:SNIFF_BYTES]
    return b"\x00" in head or (len(head) > 0 and sum(head.count(c) for c in _CONTROL) > 0.1 * len(head))


def decode(data: bytes) -> tuple[str, str]:
    """The text (a UTF-8 byte-order mark dropped, undecodable bytes replaced by U+FFFD) and '' or
    where UTF-8 decoding first failed."""
    skip = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        return data[skip:].decode("utf-8"), ""
    except UnicodeDecodeError as err:
        offset = skip + err.start
        return data[skip:].decode("utf-8", "replace"), f"byte 0x{data[offset]:02x} at offset {offset} is not UTF-8"


def markup_count(text: str) -> int:
    return len(MARKUP.findall(text))


def tokenise(text: str, strip_markup: bool = True) -> list[str]:
    """Lower-cased word tokens plus ! and ?; markup becomes a space first when `strip_markup`."""
    if strip_markup:
        text = MARKUP.sub(" ", text)
    return TOKEN.findall(text.translate(_APOSTROPHES).lower())
