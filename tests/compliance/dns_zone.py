"""A real DNS server on 127.0.0.1 answering from a zone given as a mapping (dnspython builds the
wire answers), in its own thread, so it serves async tests and the browser's live server alike.
Like `tests/capture/test_verify.ZoneServer`, but with the zone as a parameter and not tied to
one event loop."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

Zone = Mapping[str, Mapping[str, list[str]]]


def txt(*strings: str) -> str:
    """One TXT record in zone-file form; several strings are joined by readers."""
    return " ".join('"' + s.replace('"', '\\"') + '"' for s in strings)


class ZoneServer:
    """NXDOMAIN for names it lacks, an empty NOERROR for types it lacks; never answers names
    in `silent` (a timeout), SERVFAILs names in `broken`. Records every question."""

    def __init__(
        self,
        zone: Zone,
        *,
        silent: frozenset[str] = frozenset(),
        broken: frozenset[str] = frozenset(),
    ) -> None:
        self.zone = {name.lower().rstrip(".") + ".": records for name, records in zone.items()}
        self.silent = {name.rstrip(".") + "." for name in silent}
        self.broken = {name.rstrip(".") + "." for name in broken}
        self.questions: list[tuple[str, str]] = []
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(0.1)
        self.port = int(self.socket.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="dns-zone", daemon=True)

    def asked(self, name: str) -> int:
        return sum(1 for q in self.questions if q[0] == name.rstrip(".") + ".")

    def _answer(self, data: bytes) -> bytes | None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        name = question.name.to_text().lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.questions.append((name, rdtype))
        if name in self.silent:
            return None
        response = dns.message.make_response(query)
        records = self.zone.get(name)
        if name in self.broken:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif records is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif rdtype in records:
            response.answer.append(
                dns.rrset.from_text_list(name, 300, "IN", rdtype, records[rdtype])
            )
        return response.to_wire()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, address = self.socket.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            answer = self._answer(data)
            if answer is not None:
                self.socket.sendto(answer, address)

    def start(self) -> ZoneServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.socket.close()


@contextmanager
def serving(
    zone: Zone, *, silent: frozenset[str] = frozenset(), broken: frozenset[str] = frozenset()
) -> Iterator[ZoneServer]:
    server = ZoneServer(zone, silent=silent, broken=broken).start()
    try:
        yield server
    finally:
        server.stop()


def unused_port() -> int:
    """A loopback UDP port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
