"""uvicorn's httptools protocol with a cap on the request head and JSON parse errors.

uvicorn with httptools puts no limit on the request line and headers: a client can send
megabytes of header and uvicorn buffers them all. And what its parser refuses (a NUL byte in
a header, a method it does not know, a broken request line) gets a plain-text 400. Here the head
is capped at MAX_HEADER_BYTES (431), and both answers use the stable error shape.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .errors import error_bytes

LINGER_SECONDS = 2.0


class HeadTooLarge(Exception):
    """Raised from a parser callback; httptools turns it into a parse error."""


def limited_http_protocol(max_header_bytes: int, instance_name: str) -> type[HttpToolsProtocol]:
    """An HttpToolsProtocol class for uvicorn.run(http=...) with these limits."""

    class LimitedHttpTools(_LimitedHttpTools):
        max_head = max_header_bytes
        served_by = instance_name.encode()

    return LimitedHttpTools


class _LimitedHttpTools(HttpToolsProtocol):
    max_head = 16384
    served_by = b""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # between the start of a request and the end of its headers
        self._received = 0  # raw bytes received while in the head
        self._parsed = 0  # request line and header bytes parsed so far
        self._too_large = False
        self._lingering = False

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # the rest of a refused request: read and dropped
        # Counted before parsing: httptools would buffer a huge header before any callback.
        if self._in_head:
            self._received += len(data)
        super().data_received(data)
        if self._in_head and self._received > self.max_head and not self.transport.is_closing():
            self._too_large = True
            self.send_400_response("")

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._received = self._parsed = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True

    def _count(self, size: int) -> None:
        # A whole head can arrive in one read, before data_received could count it.
        self._parsed += size
        if self._parsed > self.max_head:
            self._too_large = True
            raise HeadTooLarge

    def send_400_response(self, msg: str) -> None:
        if self._lingering:
            return  # answered already
        if self._too_large:
            status = 431
            payload = error_bytes(
                431, f"Request line and headers are larger than {self.max_head} bytes.")
        else:
            status = 400
            payload = error_bytes(400, "Malformed HTTP request.")
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: ", str(len(payload)).encode(), b"\r\n",
            b"x-served-by: ", self.served_by, b"\r\n",
            b"x-content-type-options: nosniff\r\n",
            b"connection: close\r\n\r\n",
            payload,
        ]
        self.transport.write(b"".join(head))
        self._linger()

    def _linger(self) -> None:
        """Close after the answer, as nginx's lingering_close does: half-close, read and drop
        what the client is still sending for a moment, then close. Closing at once with its
        unread bytes in the socket makes the kernel send a reset, and the client may lose the
        431 before it reads it."""
        self._lingering = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()

    def eof_received(self) -> None:
        if self._lingering:
            self.transport.close()
            return
        super().eof_received()
