"""Keep secrets out of every output: logs, alerts, errors, the ledger, HTTP answers, the terminal.

A secret is redacted whole, and so is every piece of it of `MIN_PIECE` (8) characters or more:
an API or a proxy that echoes the request may cut the key anywhere (18 of its 27 characters),
and a piece that long is as good as the key to whoever reads it. What is secret in a setting
depends on its shape: an API key or a password is secret all through; of a URL, its user-info
(`https://user:pass@host` shows as `https://***@host`, whatever the URL) and the parts of its
path and query that look like tokens (a webhook's path is its key); of a connection string,
its password and account key. Redacting every 8-character piece of a whole webhook URL or
connection string would hide every `https://` and every host name they share with the text.

The search is one compiled regular expression per set of secrets: a trie of their 8-character
pieces (a secret of n characters has n - 7), so a text is scanned once, in C, whatever the
number of secrets; a match is then stretched to the longest run that continues the secret.
"""

from __future__ import annotations

import base64
import functools
import io
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any, TextIO
from urllib.parse import parse_qsl, unquote, urlsplit

MIN_PIECE = 8  # a piece of a secret this long or longer is redacted wherever it shows
MASK = "***"

# Each with a literal the text must hold for the pattern to match (a cheap test first).
_PATTERNS = (
    ("bearer", re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")),
    # HTTP basic credentials (requests sends them for a URL's user-info): base64 of user:password.
    ("basic", re.compile(r"(\bBasic\s+)(?=[A-Za-z0-9+/]*[0-9+/=])[A-Za-z0-9+/]{8,}={0,2}")),
    ("=", re.compile(r"(?i)((?:AccountKey|SharedAccessKey|Password|Pwd|sig|code)=)[^;&\s\"']+")),
    # A URL's user-info (https://user:password@host): never shown, whatever the URL.
    ("@", re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#@\s\"']+(?=@)")),
)
# Connection-string keys whose value is secret (Azure Storage, Service Bus, SQL Server).
_SECRET_KEYS = frozenset({"password", "pwd", "accountkey", "sharedaccesskey", "sharedaccesssignature", "sig"})


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every secret, every piece of one of MIN_PIECE characters or more, every
    URL's user-info and every bearer or basic credential replaced by `***`."""
    return redactor(tuple(secrets))(text)


@functools.lru_cache(maxsize=64)
def redactor(secrets: tuple[str, ...]) -> Redactor:
    """The redactor for a set of secrets, compiled once."""
    return Redactor(secrets)


class Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        whole: set[str] = set()
        pieces: set[str] = set()
        for secret in secrets:
            if secret:
                found_whole, found_pieces = secret_parts(secret)
                whole |= found_whole
                pieces |= found_pieces
        # Secrets too short to cut into pieces are still replaced whole (four characters up).
        whole |= {p for p in pieces if len(p) < MIN_PIECE}
        self._whole = sorted((w for w in whole if len(w) >= 4), key=len, reverse=True)
        self._secrets = sorted(p for p in pieces if len(p) >= MIN_PIECE)
        self._where: dict[str, list[tuple[int, int]]] = {}  # piece -> (secret index, offset)
        for index, secret in enumerate(self._secrets):
            for offset in range(len(secret) - MIN_PIECE + 1):
                self._where.setdefault(secret[offset : offset + MIN_PIECE], []).append((index, offset))
        self._search = re.compile(_trie_pattern(self._where)).search if self._where else None

    def __call__(self, text: str) -> str:
        if not text:
            return text
        for secret in self._whole:
            if secret in text:
                text = text.replace(secret, MASK)
        if self._search is not None:
            text = self._mask_pieces(text)
        lowered = text.lower()
        for literal, pattern in _PATTERNS:
            if literal in lowered:
                text = pattern.sub(r"\1" + MASK, text)
        return text

    def _mask_pieces(self, text: str) -> str:
        spans: list[list[int]] = []
        found = self._search(text)  # type: ignore[misc]
        while found is not None:
            start = found.start()
            end = max(
                self._stretch(text, start, index, offset) for index, offset in self._where[found.group()]
            )
            if spans and start <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
            found = self._search(text, start + 1)  # type: ignore[misc]
        if not spans:
            return text
        out, last = [], 0
        for start, end in spans:
            out += [text[last:start], MASK]
            last = end
        out.append(text[last:])
        return "".join(out)

    def _stretch(self, text: str, start: int, index: int, offset: int) -> int:
        """Where the run of the secret that matched at `start` ends in `text`."""
        secret, end = self._secrets[index], start + MIN_PIECE
        at = offset + MIN_PIECE
        while end < len(text) and at < len(secret) and text[end] == secret[at]:
            end, at = end + 1, at + 1
        return end


def _trie_pattern(words: Iterable[str]) -> str:
    """One regular expression matching any of `words`, shaped as their trie (a shared prefix is
    compared once), so the search costs about the same for a hundred pieces as for one."""
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        branches = [re.escape(char) + emit(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"

    return emit(trie)


def secret_parts(secret: str) -> tuple[set[str], set[str]]:
    """(replaced only whole, replaced with every piece) for one secret setting's value."""
    secret = secret.strip()
    if not secret:
        return set(), set()
    parts = _split_url(secret)
    if parts is not None:
        return parts
    if secret.startswith("/"):  # a URL's path on its own (a webhook's key)
        return {secret}, _tokens(secret.split("/"))
    if ";" in secret and "=" in secret:  # a connection string
        pieces: set[str] = set()
        for item in secret.split(";"):
            key, _, value = item.partition("=")
            if key.strip().lower() in _SECRET_KEYS and value:
                pieces |= _query_secrets(value) if "&" in value else {value}
        return {secret}, pieces
    if "=" in secret and "&" in secret:  # a query string on its own
        return {secret}, _query_secrets(secret)
    return {secret}, {secret}  # a key or a password: secret all through


def _split_url(url: str) -> tuple[set[str], set[str]] | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    whole: set[str] = set()  # the URL itself only when its path is secret (a webhook's)
    pieces: set[str] = set()
    userinfo = parts.netloc.rpartition("@")[0]
    if userinfo:
        whole.add(userinfo)
        user, _, password = userinfo.partition(":")
        for value in {password, unquote(password)}:
            if value:
                pieces.add(value)
        credentials = f"{unquote(user)}:{unquote(password)}".encode()
        pieces.add(base64.b64encode(credentials).decode())  # what HTTP basic auth sends
    rest = (
        parts.path
        + (f"?{parts.query}" if parts.query else "")
        + (f"#{parts.fragment}" if parts.fragment else "")
    )
    if rest.strip("/"):
        whole |= {url, rest}
        for part in (parts.path, parts.query, parts.fragment):
            if part.strip("/") and len(part) >= 4:
                whole.add(part)
        pieces |= _tokens(parts.path.split("/")) | _query_secrets(parts.query) | _tokens([parts.fragment])
    return whole, pieces


def _query_secrets(query: str) -> set[str]:
    return _tokens(value for _, value in parse_qsl(query, keep_blank_values=True)) | _tokens(
        value for item in query.split("&") for value in [item.partition("=")[2]]
    )


def _tokens(parts: Iterable[str]) -> set[str]:
    """The parts of a URL that look like a key (a digit in them, or long): "T0123ABCD" and
    "XQ9f...": yes; "services", "webhooks", "IncomingWebhook": no, those are words."""
    return {p for p in parts if len(p) >= MIN_PIECE and (any(c.isdigit() for c in p) or len(p) >= 20)}


_USER_INFO = re.compile(r"(?i)^([a-z][a-z0-9+.-]*://)[^/?#@]*@")


def public_url(url: str) -> str:
    """`url` as it may be shown: its user-info, if any, replaced by `***`."""
    return _USER_INFO.sub(r"\1" + MASK + "@", url)


def secret_url_parts(url: str) -> list[str]:
    """The parts of a secret URL that are secret on their own (its user-info, path and query:
    a webhook's path is its key), to redact wherever one shows up without the rest."""
    parts = urlsplit(url)
    found = [parts.netloc.rpartition("@")[0], parts.query, parts.fragment]
    if parts.path.strip("/"):
        found.append(parts.path)
    return [p for p in found if p and len(p) >= 4]


def redact_value(value: Any, secrets: Iterable[str] = ()) -> Any:
    """`value` with every text in it redacted, through lists and dicts (a ledger entry)."""
    clean = redactor(tuple(secrets))

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            return clean(item)
        if isinstance(item, Mapping):
            return {k: walk(v) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [walk(v) for v in item]
        return item

    return walk(value)


def redact_fields(record: Mapping[str, Any], secrets: Iterable[str] = ()) -> dict[str, Any]:
    """The record with every text value redacted (an alert on its way out, say)."""
    return dict(redact_value(record, secrets))


class RedactingFilter(logging.Filter):
    """Installed on the root handlers so no log line carries a secret, whoever writes it."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]
        self._redact = redactor(tuple(self.secrets))

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self._redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:  # formatters use exc_text when it is set
            record.exc_text = self._redact(logging.Formatter().formatException(record.exc_info))
        return True


# Characters that would drive a terminal rather than be shown on it: escape sequences, the other
# C0 and C1 controls, and the bidirectional overrides that make a line read backwards.
_TERMINAL_CONTROLS = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def printable(text: str) -> str:
    """`text` on one line with every character that is not printable shown escaped, as Python
    writes it (`\\x1b`, `\\n`, `\\u202e`): for names that come from outside (file names)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class RedactingWriter(io.TextIOBase):
    """A text stream (stdout, stderr) that redacts what goes through it, line by line, and shows
    terminal control characters escaped: nothing printed can carry a secret or drive the
    terminal, whichever code prints it. A line is held until its end or a flush."""

    def __init__(self, stream: TextIO, secrets: Iterable[str]) -> None:
        super().__init__()
        self.stream = stream
        self._redact = redactor(tuple(s for s in secrets if s))
        self._held = ""

    def write(self, text: str) -> int:
        self._held += text
        if "\n" in self._held:
            done, _, self._held = self._held.rpartition("\n")
            self.stream.write(self._clean(done + "\n"))
        return len(text)

    def flush(self) -> None:
        if self._held:
            held, self._held = self._held, ""
            self.stream.write(self._clean(held))
        self.stream.flush()

    def _clean(self, text: str) -> str:
        return _TERMINAL_CONTROLS.sub(lambda m: repr(m.group())[1:-1], self._redact(text))

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", "utf-8")
