"""A real authoritative DNS server on 127.0.0.1 for tests (UDP and TCP, same free port).

Why not mock dnspython: the point of the tests is that our resolver settings,
ports, timeouts and error mapping work against real DNS packets.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from dnslib import AAAA, CNAME, MX, QTYPE, RCODE, RR, TXT, A, DNSError, DNSRecord
from dnslib.server import DNSHandler, DNSLogger, DNSServer

_BEHAVIOURS = ("servfail", "timeout")
_TTL = 60
_UDP_LIMIT = 512


def _key(name: str) -> str:
    return name.rstrip(".").lower() + "."


def _rdata(rtype: str, value):
    if rtype == "A":
        return A(value)
    if rtype == "AAAA":
        return AAAA(value)
    if rtype == "CNAME":
        return CNAME(_key(value))
    if rtype == "MX":
        preference, host = value.split()
        return MX(host if host == "." else _key(host), int(preference))
    if rtype == "TXT":
        chunks = [value[i : i + 255] for i in range(0, len(value), 255)] if isinstance(value, str) else list(value)
        return TXT(chunks or [""])
    raise ValueError(f"unsupported record type {rtype}")


@dataclass
class _Zone:
    records: dict[str, list[tuple[str, object, int]]] = field(default_factory=dict)
    behaviours: dict[str, str] = field(default_factory=dict)
    queries: list[tuple[str, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Dropped(DNSError):
    """Raised from the resolver: dnslib's handler catches DNSError and sends nothing."""


class _Resolver:
    def __init__(self, zone: _Zone) -> None:
        self.zone = zone

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        qname = _key(str(request.q.qname))
        qtype = QTYPE[request.q.qtype]
        with self.zone.lock:
            self.zone.queries.append((qname, qtype, handler.protocol))
            behaviour = self.zone.behaviours.get(qname)
            records = {name: list(rrs) for name, rrs in self.zone.records.items()}
        if behaviour == "timeout":
            raise _Dropped("dropped on purpose")
        reply = request.reply()
        if behaviour == "servfail":
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        if qname not in records:
            # A name that only has names below it ("empty non-terminal") exists: NOERROR, no answer.
            if not any(name.endswith("." + qname) for name in records):
                reply.header.rcode = RCODE.NXDOMAIN
            return reply
        name, seen = qname, set()
        while name in records and name not in seen:  # follow CNAMEs inside our zone, as an authority does
            seen.add(name)
            cname = [(rdata, ttl) for rtype, rdata, ttl in records[name] if rtype == "CNAME"]
            if cname and qtype != "CNAME":
                reply.add_answer(RR(name, QTYPE.CNAME, rdata=cname[0][0], ttl=cname[0][1]))
                name = str(cname[0][0].label)
                continue
            for rtype, rdata, ttl in records[name]:
                if rtype == qtype:
                    reply.add_answer(RR(name, getattr(QTYPE, rtype), rdata=rdata, ttl=ttl))
            break
        if handler.protocol == "udp" and len(reply.pack()) > _UDP_LIMIT:
            # Like a classic server: question kept, answers dropped, TC set; the client retries over TCP.
            truncated = request.reply()
            truncated.header.tc = 1
            return truncated
        return reply


class LoopbackDNS:
    """Authoritative test DNS: unknown names get NXDOMAIN, known names without the asked
    type get an empty NOERROR answer, ``set_behaviour`` makes a name SERVFAIL or time out."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        self._zone = _Zone()
        self._servers: list[DNSServer] = []
        self._threads: list[threading.Thread] = []
        self.port = 0

    # -- records -------------------------------------------------------------
    def add(self, name: str, rtype: str, value, ttl: int = _TTL) -> None:
        """Add a record: TXT "text" (or a list of strings), MX "10 mx.example.com", A, AAAA, CNAME."""
        rtype = rtype.upper()
        rdata = _rdata(rtype, value)
        with self._zone.lock:
            self._zone.records.setdefault(_key(name), []).append((rtype, rdata, ttl))

    def set_behaviour(self, name: str, behaviour: str | None) -> None:
        """Make every query for ``name`` answer SERVFAIL or never answer; None restores normal."""
        if behaviour is not None and behaviour not in _BEHAVIOURS:
            raise ValueError(f"behaviour must be one of {_BEHAVIOURS} or None")
        with self._zone.lock:
            if behaviour is None:
                self._zone.behaviours.pop(_key(name), None)
            else:
                self._zone.behaviours[_key(name)] = behaviour

    def clear(self) -> None:
        with self._zone.lock:
            self._zone.records.clear()
            self._zone.behaviours.clear()
            self._zone.queries.clear()

    @property
    def queries(self) -> list[tuple[str, str, str]]:
        """Queries received so far as ``(name., TYPE, "udp"|"tcp")``."""
        with self._zone.lock:
            return list(self._zone.queries)

    @property
    def servers(self) -> list[tuple[str, int]]:
        """The value to hand to ``make_resolver``."""
        return [(self.host, self.port)]

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> None:
        resolver = _Resolver(self._zone)
        logger = DNSLogger(log="-request,-reply,-truncated,-error", prefix=False)
        for _attempt in range(20):
            udp = DNSServer(resolver, address=self.host, port=0, logger=logger)
            port = udp.server.server_address[1]
            try:
                tcp = DNSServer(resolver, address=self.host, port=port, tcp=True, logger=logger)
            except OSError:
                udp.server.server_close()
                continue
            break
        else:
            raise RuntimeError("no free port with both UDP and TCP available")
        self.port = port
        self._servers = [udp, tcp]
        for server in self._servers:
            thread = threading.Thread(target=server.server.serve_forever, args=(0.05,), name=f"dns-{port}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        for server in self._servers:
            server.server.shutdown()
            server.server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers, self._threads = [], []

    def __enter__(self) -> LoopbackDNS:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
