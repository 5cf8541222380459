#!/usr/bin/env python3
"""Independent QUIC peer (aioquic) for testing buffet's QUIC code.

Speaks the "buffet-test" protocol (ALPN "buffet-test"): every exchange is one
client-initiated bidirectional stream carrying `PUT <n>\\n` + payload or
`GET <n>\\n`; see the usage text of the two subcommands.

  quic_peer.py server --host 127.0.0.1 --port 0 --cert c.pem --key k.pem
  quic_peer.py client --host 127.0.0.1 --port P --ca c.pem --put N --get N --small K

Exit status: 0 all streams ok, 1 a failure, 2 timeout or usage/setup error.
"""

import argparse
import asyncio
import hashlib
import os
import re
import signal
import socket
import ssl
import sys
import time

from aioquic.asyncio import QuicConnectionProtocol, connect, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (
    ConnectionTerminated,
    HandshakeCompleted,
    StreamDataReceived,
    StreamReset,
)

ALPN = "buffet-test"
PERIOD = 65521  # prime: pattern periods never align with packet/buffer sizes
BASE = bytes(((j * 31) ^ (j >> 8)) & 0xFF for j in range(PERIOD))
CHUNK = 1 << 20
# A chunk may start anywhere in the period, so keep one spare period.
BIG = BASE * (CHUNK // PERIOD + 2)
# Unacknowledged bytes queued per stream before we stop feeding it; keeps
# memory flat for huge payloads while staying well above one flight.
SEND_WINDOW = 4 << 20
MAX_HEADER = 64
MAX_N = 1 << 40
STREAM_WINDOW = 16 << 20
CONN_WINDOW = 64 << 20
MAX_BIDI = 1000
HEADER_RE = re.compile(rb"(PUT|GET) (0|[1-9][0-9]{0,15})")


def log(*a):
    print(*a, flush=True)


def pattern_chunk(off, length):
    """Bytes [off, off+length) of the infinite pattern; length <= CHUNK."""
    s = off % PERIOD
    return BIG[s : s + length]


def pattern(n):
    return (BASE * (n // PERIOD + 1))[:n]


_sha_cache = {}


def pattern_sha(n):
    h = _sha_cache.get(n)
    if h is None:
        d = hashlib.sha256()
        off = 0
        while off < n:
            ln = min(CHUNK, n - off)
            d.update(pattern_chunk(off, ln))
            off += ln
        h = _sha_cache[n] = d.hexdigest()
    return h


def arm_timeout(seconds, what):
    # A signal timer fires even if the event loop is wedged, so we never hang.
    def fire(_sig, _frm):
        sys.stderr.write("%s: timeout after %gs, giving up\n" % (what, seconds))
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(2)

    signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)


def describe_close(ev):
    """'none' for a clean close by the peer, else the code (or 'idle')."""
    if ev is None:
        return "unknown", ""
    if ev.reason_phrase == "Idle timeout":  # aioquic's own, no CONNECTION_CLOSE seen
        return "idle", ev.reason_phrase
    if ev.error_code == 0:
        return "none", ev.reason_phrase or ""
    reason = ev.reason_phrase or ""
    if 0x100 <= ev.error_code < 0x200:  # QUIC carries TLS alerts as 0x100 + alert
        reason = "TLS alert %d: %s" % (ev.error_code - 0x100, reason)
    return "0x%x" % ev.error_code, reason


class Outgoing:
    """A payload fed into a stream in chunks as the peer acknowledges data."""

    __slots__ = ("sid", "off", "n", "make", "hasher", "on_done")

    def __init__(self, sid, n, make, hasher, on_done):
        self.sid, self.off, self.n = sid, 0, n
        self.make, self.hasher, self.on_done = make, hasher, on_done


class PeerProtocol(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._outs = {}
        self.terminated = None
        self.alpn = None
        self.bytes_sent = 0
        self.bytes_received = 0
        # aioquic has no setting for this and never raises it on its own;
        # transport parameters are built from .value at handshake time.
        lim = getattr(self._quic, "_local_max_streams_bidi", None)
        if lim is not None:
            lim.value = lim.sent = max(lim.value, MAX_BIDI)

    def connection_made(self, transport):
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Loopback bursts overflow the default UDP buffer; losses then
            # throttle congestion control for nothing.
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, opt, 8 << 20)
                except OSError:
                    pass

    def grant_stream(self):
        """Let the peer open one more stream (one of ours has finished)."""
        lim = getattr(self._quic, "_local_max_streams_bidi", None)
        if lim is not None:
            lim.value += 1

    def send(self, sid, data, fin=False):
        self.bytes_sent += len(data)
        self._quic.send_stream_data(sid, data, end_stream=fin)

    def send_payload(self, sid, n, make, hasher, on_done):
        if n == 0:
            self.send(sid, b"", fin=True)
            on_done()
            return
        self._outs[sid] = Outgoing(sid, n, make, hasher, on_done)
        self._pump()
        self.transmit()

    def _buffered(self, sid):
        st = self._quic._streams.get(sid) if hasattr(self._quic, "_streams") else None
        snd = getattr(st, "sender", None)
        try:
            return snd._buffer_stop - snd._buffer_start
        except AttributeError:
            return 0

    def _pump(self):
        if not self._outs or self.terminated is not None:
            return
        for sid, out in list(self._outs.items()):
            try:
                while out.off < out.n and self._buffered(sid) < SEND_WINDOW:
                    ln = min(CHUNK, out.n - out.off)
                    data = out.make(out.off, ln)
                    out.off += ln
                    if out.hasher is not None:
                        out.hasher.update(data)
                    self.send(sid, data, fin=out.off == out.n)
            except Exception as e:  # stream reset or connection gone
                log("stream %d send failed: %s" % (sid, e))
                del self._outs[sid]
                continue
            if out.off == out.n:
                del self._outs[sid]
                out.on_done()

    def datagram_received(self, data, addr):
        self._quic.receive_datagram(data, addr, now=self._loop.time())
        self._process_events()
        # ACKs arrive here and free send buffer space.
        self._pump()
        self.transmit()

    def quic_event_received(self, event):
        if isinstance(event, StreamDataReceived):
            self.bytes_received += len(event.data)
            self.on_data(event.stream_id, event.data, event.end_stream)
        elif isinstance(event, StreamReset):
            self._outs.pop(event.stream_id, None)
            self.on_reset(event.stream_id, event.error_code)
        elif isinstance(event, HandshakeCompleted):
            self.alpn = event.alpn_protocol
        elif isinstance(event, ConnectionTerminated):
            self.terminated = event
            self.on_terminated(event)
            self._outs.clear()


# ----------------------------------------------------------------- server


class ServerStream:
    __slots__ = ("sid", "hdr", "cmd", "n", "got", "hasher", "expect", "done", "ok")

    def __init__(self, sid):
        self.sid = sid
        self.hdr = bytearray()
        self.cmd = None
        self.n = 0
        self.got = 0
        self.hasher = None
        self.expect = None
        self.done = False
        self.ok = False


class ServerState:
    def __init__(self, max_conns, lossy=False):
        self.max_conns = max_conns
        self.lossy = lossy
        self.conns_done = 0
        self.bad = 0
        self.finished = asyncio.Event()


class ServerProtocol(PeerProtocol):
    def __init__(self, *args, state=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.state = state
        self.streams = {}
        self.failures = 0

    def finish(self, st, ok, line):
        st.done, st.ok = True, ok
        if not ok:
            self.failures += 1
        log("stream %d %s" % (st.sid, line))
        self.grant_stream()

    def error(self, st, reason):
        self.send(st.sid, b"ERR " + reason.encode() + b"\n", fin=True)
        self.finish(st, False, "%s %d ERR %s" % (st.cmd or "?", st.n, reason))

    def on_data(self, sid, data, fin):
        st = self.streams.get(sid)
        if st is None:
            if sid % 4 != 0:
                return  # only client-initiated bidi streams carry exchanges
            st = self.streams[sid] = ServerStream(sid)
        if st.done:
            return
        if st.cmd is None:
            nl = data.find(b"\n")
            if nl < 0:
                st.hdr += data
                if len(st.hdr) > MAX_HEADER:
                    return self.error(st, "request line too long")
                if fin:
                    return self.error(st, "bad request line (no newline)")
                return
            st.hdr += data[:nl]
            data = data[nl + 1 :]
            m = HEADER_RE.fullmatch(bytes(st.hdr))
            if m is None:
                return self.error(st, "bad request line %r" % bytes(st.hdr[:MAX_HEADER]))
            st.cmd, st.n = m.group(1).decode(), int(m.group(2))
            if st.n > MAX_N:
                return self.error(st, "n too large")
            if st.cmd == "PUT":
                st.hasher = hashlib.sha256()
                st.expect = pattern_sha(st.n)
        if st.cmd == "GET":
            if data:
                return self.error(st, "GET followed by payload bytes")
            if fin:
                self.start_get(st)
            return
        if st.got + len(data) > st.n:
            return self.error(st, "PUT payload longer than %d" % st.n)
        st.got += len(data)
        st.hasher.update(data)
        if not fin:
            return
        if st.got != st.n:
            return self.error(st, "PUT payload short: %d of %d bytes" % (st.got, st.n))
        hx = st.hasher.hexdigest()
        if hx == st.expect:
            self.send(sid, hx.encode() + b"\n", fin=True)
            self.finish(st, True, "PUT %d sha256=%s ok" % (st.n, hx))
        else:
            self.send(sid, b"ERR PUT payload does not match pattern(%d), sha256=%s\n"
                      % (st.n, hx.encode()), fin=True)
            self.finish(st, False, "PUT %d sha256=%s MISMATCH" % (st.n, hx))

    def start_get(self, st):
        h = hashlib.sha256()

        def done():
            self.finish(st, True, "GET %d sha256=%s ok" % (st.n, h.hexdigest()))

        # Mark busy so stray data does not trigger a second response.
        st.done = True
        self.send_payload(st.sid, st.n, pattern_chunk, h, done)

    def on_reset(self, sid, code):
        st = self.streams.get(sid)
        if st is None:
            st = self.streams[sid] = ServerStream(sid)
        if st.ok:
            return
        if st.done:  # a GET being sent: count it again as failed
            st.ok = False
            self.failures += 1
            log("stream %d %s %d reset by peer code=%d" % (sid, st.cmd, st.n, code))
            return
        self.finish(st, False, "%s %d reset by peer code=%d" % (st.cmd or "?", st.n, code))

    def on_terminated(self, ev):
        for st in self.streams.values():
            if not st.done or (st.cmd == "GET" and st.sid in self._outs):
                self.failures += 1
                log("stream %d %s %d incomplete at connection close" % (st.sid, st.cmd or "?", st.n))
        code, reason = describe_close(ev)
        if self.alpn is not None and self.alpn != ALPN:
            code, reason = code if code != "none" else "alpn", "ALPN %r" % self.alpn
        # The client sends its CONNECTION_CLOSE once; a path that drops datagrams may drop it, and
        # then the idle timeout ends a connection whose every exchange was already checked.
        if code == "idle" and self.state.lossy and not self.failures and self.streams:
            log("conn closed by the idle timeout after every exchange: allowed (--lossy)")
            code = "none"
        log("conn done streams=%d failures=%d error=%s%s"
            % (len(self.streams), self.failures, code,
               (" reason=%r" % reason) if reason and code != "none" else ""))
        s = self.state
        s.conns_done += 1
        if self.failures or code != "none":
            s.bad += 1
        if s.conns_done >= s.max_conns:
            s.finished.set()


async def run_server(args):
    cfg = QuicConfiguration(
        is_client=False,
        alpn_protocols=[ALPN],
        max_stream_data=STREAM_WINDOW,
        max_data=CONN_WINDOW,
    )
    if args.idle:
        cfg.idle_timeout = args.idle
    try:
        cfg.load_cert_chain(args.cert, args.key)
    except Exception as e:
        sys.stderr.write("server: cannot load cert/key: %s\n" % e)
        return 2
    state = ServerState(args.max_conns, args.lossy)

    def make(*a, **kw):
        return ServerProtocol(*a, state=state, **kw)

    server = await serve(args.host, args.port, configuration=cfg, create_protocol=make)
    port = server._transport.get_extra_info("sockname")[1]
    log("listening %d" % port)
    try:
        await state.finished.wait()
    finally:
        server.close()
    return 1 if state.bad else 0


# ----------------------------------------------------------------- client


class ClientProtocol(PeerProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pending = {}  # sid -> (future, receiver state)

    def on_data(self, sid, data, fin):
        p = self.pending.get(sid)
        if p is None:
            return
        fut, rx = p
        rx.feed(data)
        if fin:
            del self.pending[sid]
            if not fut.done():
                fut.set_result(None)

    def on_reset(self, sid, code):
        p = self.pending.pop(sid, None)
        if p and not p[0].done():
            p[0].set_exception(ConnectionError("stream reset by server, code %d" % code))

    def on_terminated(self, ev):
        code, reason = describe_close(ev)
        for fut, _rx in self.pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("connection closed: error=%s %s" % (code, reason)))
        self.pending.clear()


class PutRx:
    def __init__(self):
        self.buf = bytearray()

    def feed(self, data):
        if len(self.buf) < 512:
            self.buf += data[: 512 - len(self.buf)]


class GetRx:
    def __init__(self):
        self.h = hashlib.sha256()
        self.n = 0
        self.head = bytearray()

    def feed(self, data):
        self.h.update(data)
        self.n += len(data)
        if len(self.head) < 200:
            self.head += data[: 200 - len(self.head)]


async def exchange(proto, kind, n, corrupt, verbose):
    """One PUT or GET on a fresh stream; returns True if verified."""
    loop = asyncio.get_running_loop()
    sid = proto._quic.get_next_available_stream_id()
    fut = loop.create_future()
    rx = PutRx() if kind == "PUT" else GetRx()
    proto.pending[sid] = (fut, rx)
    proto.send(sid, b"%s %d\n" % (kind.encode(), n), fin=(kind == "GET"))
    sent_hash = None
    if kind == "PUT":
        sent_hash = hashlib.sha256()
        make = pattern_chunk
        if corrupt and n > 0:
            bad = n // 2

            def make(off, ln):
                c = pattern_chunk(off, ln)
                if off <= bad < off + ln:
                    b = bytearray(c)
                    b[bad - off] ^= 0x5A
                    c = bytes(b)
                return c

        if n <= CHUNK:  # small: one write, no pump bookkeeping
            data = make(0, n)
            sent_hash.update(data)
            proto.send(sid, data, fin=True)
        else:
            proto.send_payload(sid, n, make, sent_hash, lambda: None)
    proto.transmit()
    try:
        await fut
    except ConnectionError as e:
        log("stream %d %s %d FAILED: %s" % (sid, kind, n, e))
        return False
    if kind == "PUT":
        hx = sent_hash.hexdigest()
        ok = bytes(rx.buf) == hx.encode() + b"\n"
        if not ok or verbose:
            log("stream %d PUT %d sha256=%s %s" % (sid, n, hx, "ok" if ok else "MISMATCH"))
        if not ok:
            log("  server answered: %r" % bytes(rx.buf[:200]))
    else:
        hx = rx.h.hexdigest()
        ok = rx.n == n and hx == pattern_sha(n)
        if not ok or verbose:
            log("stream %d GET %d sha256=%s %s" % (sid, n, hx, "ok" if ok else "MISMATCH"))
        if not ok:
            log("  received %d of %d bytes, starting %r" % (rx.n, n, bytes(rx.head[:80])))
    return ok


async def run_client(args):
    cfg = QuicConfiguration(
        is_client=True,
        alpn_protocols=[ALPN],
        max_stream_data=STREAM_WINDOW,
        max_data=CONN_WINDOW,
        server_name=args.server_name,
    )
    if args.idle:
        cfg.idle_timeout = args.idle
    if args.insecure:
        cfg.verify_mode = ssl.CERT_NONE
    elif not args.ca:
        sys.stderr.write("client: --ca is required (or --insecure)\n")
        return 2
    else:
        try:
            # aioquic only reads the file during the handshake; fail early here.
            with open(args.ca, "rb") as f:
                if b"-----BEGIN CERTIFICATE-----" not in f.read():
                    raise ValueError("no PEM certificate in file")
            cfg.load_verify_locations(cafile=args.ca)
        except Exception as e:
            sys.stderr.write("client: cannot load CA file %s: %s\n" % (args.ca, e))
            return 2

    holder = []

    def make(*a, **kw):
        p = ClientProtocol(*a, **kw)
        holder.append(p)
        return p

    t0 = time.monotonic()
    all_ok = True
    try:
        async with connect(args.host, args.port, configuration=cfg, create_protocol=make) as proto:
            if proto.alpn != ALPN:
                sys.stderr.write("client: server negotiated ALPN %r, want %r\n" % (proto.alpn, ALPN))
                proto.close(error_code=0x178, reason_phrase="wrong ALPN")
                return 1
            sem = asyncio.Semaphore(32)

            async def small(i):
                kind = "PUT" if i % 2 == 0 else "GET"
                n = 1 + (i * 977) % args.small_size
                async with sem:
                    return await exchange(proto, kind, n, args.corrupt and args.put == 0 and i == 0, False)

            big = []
            if args.put:
                big.append(exchange(proto, "PUT", args.put, args.corrupt, True))
            if args.get:
                big.append(exchange(proto, "GET", args.get, False, True))
            nbig = len(big)
            res = await asyncio.gather(*big, *(small(i) for i in range(args.small)))
            all_ok = all(res)
            if args.small:
                f = res[nbig:].count(False)
                log("small %d %s" % (args.small, "ok" if f == 0 else "%d failed" % f))
            proto.close(error_code=0)
            await proto.wait_closed()
    except ConnectionError as e:
        p = holder[0] if holder else None
        code, reason = describe_close(p.terminated if p else None)
        if p is not None and p.alpn is None:
            sys.stderr.write("client: handshake with %s:%d failed: error=%s %s\n"
                             % (args.host, args.port, code, reason or e))
        else:
            sys.stderr.write("client: connection lost: error=%s %s\n" % (code, reason or e))
        return 1
    except OSError as e:
        sys.stderr.write("client: cannot connect to %s:%d: %s\n" % (args.host, args.port, e))
        return 1
    dt = time.monotonic() - t0
    p = holder[0]
    log("total bytes sent=%d received=%d seconds=%.3f" % (p.bytes_sent, p.bytes_received, dt))
    return 0 if all_ok else 1


def main():
    ap = argparse.ArgumentParser(description="buffet-test QUIC peer (aioquic)")
    sub = ap.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("server")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--cert", required=True)
    s.add_argument("--key", required=True)
    s.add_argument("--max-conns", type=int, default=1)
    s.add_argument("--idle", type=float, default=None, help="idle timeout, seconds")
    s.add_argument("--lossy", action="store_true",
                   help="the path may drop the client's close: an idle timeout after every exchange is clean")
    s.add_argument("--timeout", type=float, default=120)
    c = sub.add_parser("client")
    c.add_argument("--host", default="127.0.0.1")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--ca")
    c.add_argument("--server-name", default="localhost")
    c.add_argument("--put", type=int, default=0)
    c.add_argument("--get", type=int, default=0)
    c.add_argument("--small", type=int, default=0)
    c.add_argument("--small-size", type=int, default=3000)
    c.add_argument("--insecure", action="store_true")
    c.add_argument("--idle", type=float, default=None, help="idle timeout, seconds")
    c.add_argument("--timeout", type=float, default=120)
    c.add_argument("--corrupt", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mode == "client" and (min(args.put, args.get, args.small) < 0 or args.small_size < 1):
        ap.error("sizes must be >= 0 and --small-size >= 1")
    arm_timeout(args.timeout, args.mode)
    rc = asyncio.run(run_server(args) if args.mode == "server" else run_client(args))
    sys.stdout.flush()
    sys.exit(rc)


if __name__ == "__main__":
    main()
