"""OSC control of a running patch: params, events, notes, queries, timetagged bundles.

:class:`OscServer` listens on UDP (127.0.0.1:9000 by default) and turns
messages into engine events. Nothing here touches the graph: every change
goes through the engine's thread-safe event queue (``player.schedule`` or
``engine.schedule``) and is applied between samples by the audio thread.

Addresses (a node inside a voice is ``keys/3/osc``, so ``/keys/3/osc/freq``)::

    /<node>/<param> VALUE              set, with the param's smoothing (VALUE: number or "A4", "-6dB", "20ms")
    /<node>/<param>/ramp TARGET SECONDS [lin|exp]
    /<node>/trigger [VELOCITY]         nodes that take trigger events (envelopes, strings)
    /<node>/release                    (with no argument it is the event even where a param is
                                       called 'release' too, as in adsr)
    /<poly>/note PITCH [VELOCITY]      PITCH in Hz or a note name; VELOCITY 0..1, 0 is a note off
    /<poly>/note_off [PITCH]           no PITCH: every held note
    /<poly>/all_off
    /patch/nodes                       queries, answered to the sender (see below)
    /patch/params NODE
    /patch/graph
    /patch/add|remove|connect|disconnect|load|save ...   live edits: passed to ``server.on_edit``
    /patch/notify 1|0                  subscribe the sender to ``/param NODE PARAM VALUE`` (0: unsubscribe)

**Address patterns** (OSC 1.0) select every matching set, ramp, trigger or
note address at once: ``*`` (any run of characters but ``/``), ``?`` (one
character), ``[abc]``, ``[a-z]``, ``[!abc]`` (one of, or none of, a set)
and ``{lfo,osc}`` (one of the words), in node and param names alike:
``/voice*/cutoff 800``, ``/keys/*/env/attack 0.01``. A pattern that matches
nothing is answered ``/error`` like an unknown address; each match that
refuses the values gets its own ``/error``. Matching is linear in the
length of the pattern and of each name (no backtracking).

**Notifications.** After ``/patch/notify 1`` (answered ``/done /patch/notify 1``)
the sender receives ``/param NODE PARAM VALUE`` each time a param is set
(VALUE: the value, clamped if ``clamp``) or ramped (VALUE: the target) over
OSC, by any client. They are sent by the reply thread; when it falls
behind (a flood of sets), a param's notifications are coalesced to its
latest value, so the last value is always the one a subscriber keeps.
At most ``max_subscribers`` clients; ``/patch/notify 0`` unsubscribes.

**Replies** go to the sender's address and port, one OSC message per item,
then a ``/done`` message, so a UI never meets a packet too large for UDP and
parses every reply the same way::

    /patch/node  NAME TYPE                                   one per node, in patch order
    /patch/param NODE PARAM VALUE LO HI UNIT CURVE DEFAULT DOC   one per param (floats and strings)
    /patch/edge  SRC SRC_PORT DST DST_PORT KIND               KIND: "input" or "param"
    /done QUERY COUNT [NODE]                                  e.g. /done /patch/params 5 osc
    /done EDIT_ADDRESS [RESULT...]                            an edit that succeeded
    /error ADDRESS REASON                                     anything refused ("" when no address parsed)

Sets, ramps, triggers and notes get no reply when they succeed (as in
SuperCollider); every refusal gets an ``/error``, at most ``error_rate``
per second in all (the rest are counted, not answered), so a flood of bad
packets cannot flood its sender back.

**Timetagged bundles.** A bundle's timetag is an NTP time (seconds since
1900 on the sender's wall clock). It becomes a time on the player's clock
(``player.clock``, else ``time.monotonic``) through the offset between the
wall clock and that clock, measured at start and again every second (the
smallest-gap reading of ``clock, time.time, clock``, so a wall clock that
is stepped or slewed is followed); ``player.frame_at`` then names the
frame. ``latency`` seconds are added to every timetag first: a controller
that stamps its messages with the time of the gesture and sends them at
once gets its timing kept exactly, delayed by ``latency``, as long as each
message arrives within ``latency`` of its stamp (SuperCollider's latency
window, held on the server). A bundle whose frame is already rendered is
late: it is applied at once and counted (``stats["late"]``). The immediate
timetag (1) means as soon as possible. Timetags more than ``max_ahead``
seconds ahead are refused. Messages outside bundles are applied as soon as
possible (the start of the next block). Queries and edits inside a bundle
are answered at once, whatever its timetag. A bundle is not atomic: its
valid messages are applied, its bad ones answered with ``/error``.

**TCP** (``tcp_port``, or ``tcp=True`` for the UDP port's number) takes
the same messages over a stream, framed as OSC 1.1 says (SLIP, the
default) or as OSC 1.0 did (``tcp_framing="size"``: a big-endian int32
length before each packet); replies and notifications go back on the same
connection, framed the same way. A frame over ``max_packet`` is dropped and
counted (``oversized``; a size-framed stream cannot resync, so it is
closed). At most ``max_clients`` connections; each has a reader thread.

**Threads.** One receive thread does the minimum per packet (parse with
python-osc, look the address up in a table built once per engine, check the
values, queue the event); a second thread answers queries, runs edits and
sends every reply. The socket asks for a large receive buffer
(``rcvbuf``, 4 MiB) so a burst waits in the kernel instead of being dropped;
``stats["kernel_drops"]`` reads the kernel's own drop count for the socket.

python-osc itself logs a warning to the *root* logger for a type tag it
does not know or a bundle element that is neither a message nor a bundle;
every packet is checked for those first, so they are refused and counted
here (``malformed``) and nothing of a flood reaches the user's terminal.

**Security.** The server binds 127.0.0.1 unless another host is asked for.
No message runs code or opens files: values are numbers or unit strings,
and ``/patch/load`` and ``/patch/save`` paths must resolve (symlinks
followed) to a ``.yaml``/``.yml`` file inside the patch's folder (see
:func:`resolve_patch_path`) before the edit handler sees them.

Example:
    >>> with OscServer(player, port=9000) as server:   # doctest: +SKIP
    ...     time.sleep(10)
    ...     print(server.stats)
"""
from __future__ import annotations

import logging
import math
import os
import queue
import socket
import struct
import threading
import time
from typing import Any, Callable

from pythonosc import slip
from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.parsing import osc_types

from .engine import ASAP, EngineBusy  # ASAP: the frame meaning "at the start of the next block"
from .errors import suggest
from .patch import Event
from .units import UnitError, parse_value

log = logging.getLogger(__name__)

DEFAULT_PORT = 9000
#: seconds between the NTP epoch (1900) and the Unix epoch (1970)
NTP_UNIX_OFFSET = 2208988800
QUERIES = ("/patch/nodes", "/patch/params", "/patch/graph", "/patch/notify")
NOTIFY = "/patch/notify"
EDITS = ("/patch/add", "/patch/remove", "/patch/connect", "/patch/disconnect", "/patch/load", "/patch/save")
#: error kinds counted in ``stats["errors"]``
ERROR_KINDS = ("malformed", "oversized", "unknown_node", "unknown_param", "unknown_address", "bad_args",
               "out_of_range", "too_far_ahead", "not_available", "path", "edit_failed", "busy", "internal")
_BUNDLE = b"#bundle\x00"
_MAX_RAMP_S = 3600.0
_MAX_PATTERN = 512  # characters of an address pattern
_PATTERN_CACHE = 512  # patterns remembered per route table


class OscError(Exception):
    """A refused message: ``kind`` (one of :data:`ERROR_KINDS`) and the reason sent back."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


# ---------------------------------------------------------------- paths
def resolve_patch_path(base_dir: str, path: Any, *, suffixes=(".yaml", ".yml")) -> str:
    """The absolute path of ``path`` if it names a patch file inside ``base_dir``.

    The rule for ``/patch/load`` and ``/patch/save``: a relative path, with
    one of ``suffixes``, that stays inside the patch's folder once ``..``
    and every symlink (of the folder, of the file, of any folder between)
    are resolved. Anything else raises :class:`OscError` (kind ``path``).
    """
    if not isinstance(path, str) or not path.strip():
        raise OscError("path", "a path is a non-empty string relative to the patch's folder")
    if "\x00" in path:
        raise OscError("path", "a path cannot contain NUL")
    if os.path.isabs(path) or path.startswith(("~", "\\")) or (len(path) > 1 and path[1] == ":"):
        raise OscError("path", f"'{path}' is absolute: give a path relative to the patch's folder")
    if not path.lower().endswith(tuple(suffixes)):
        raise OscError("path", f"'{path}' is not a patch file (expected {' or '.join(suffixes)})")
    base = os.path.realpath(base_dir)
    full = os.path.realpath(os.path.join(base, path))
    if os.path.commonpath([base, full]) != base or full == base:
        raise OscError("path", f"'{path}' is outside the patch's folder")
    return full


# ---------------------------------------------------------------- routes
def build_routes(engine) -> dict[str, tuple]:
    """Every address the running patch answers: ``address -> (action, node, param or None, Param or None)``."""
    routes: dict[str, tuple] = {}
    polys = set(getattr(engine.spec, "polys", {}) or {})
    for name, node in engine.nodes.items():
        base = "/" + name
        for pname, ps in engine.params.get(name, {}).items():
            routes.setdefault(f"{base}/{pname}", ("set", name, pname, ps.spec))
            routes.setdefault(f"{base}/{pname}/ramp", ("ramp", name, pname, ps.spec))
        events = getattr(type(node), "events", {}) or {}
        for kind in ("trigger", "release"):
            if kind in events:
                routes.setdefault(f"{base}/{kind}", (kind, name, None, None))
        if name in polys:
            for kind in ("note", "note_off", "all_off"):
                routes.setdefault(f"{base}/{kind}", (kind, name, None, None))
    return routes


def explain_address(engine, address: str) -> OscError:
    """Why ``address`` names nothing in the running patch (slow path: for the ``/error`` reply)."""
    parts = address.strip("/").split("/")
    for k in range(len(parts), 0, -1):
        name = "/".join(parts[:k])
        if name in engine.nodes:
            rest = parts[k:]
            break
    else:
        return OscError("unknown_node", f"no node '{parts[0]}'" + _hint(suggest(parts[0], engine.nodes)))
    node = engine.nodes[name]
    params = engine.params.get(name, {})
    tname = getattr(node, "type_name", type(node).__name__)
    if not rest:
        return OscError("unknown_address", f"'{address}' names node '{name}': add a param or an action "
                                           f"(/{name}/<param>, /{name}/trigger...)")
    word = rest[0]
    if word in params:
        return OscError("unknown_address", f"'{address}': after a param only '/ramp' may follow")
    if word in ("trigger", "release", "note", "note_off", "all_off"):
        events = list(getattr(type(node), "events", {}) or {})
        return OscError("unknown_param", f"a {tname} node takes no '{word}' events (it takes: "
                                         f"{', '.join(events) or 'none'})")
    choices = list(params) + list(getattr(type(node), "events", {}) or {})
    hint = suggest(word, choices)
    return OscError("unknown_param", f"'{tname}' node '{name}' has no param '{word}'" +
                    (_hint(hint) if hint else f" (params: {', '.join(params) or 'none'})"))


# ---------------------------------------------------------------- address patterns
def is_pattern(address: str) -> bool:
    """Whether ``address`` uses OSC 1.0 pattern syntax (``*``, ``?``, ``[...]``, ``{...}``)."""
    return any(c in address for c in "*?[{")


def _segment_tokens(seg: str) -> list:
    """One ``/``-free part of a pattern as tokens: ``(kind, data)``, kind lit, star, one, set or alt."""
    tokens: list = []
    lit: list[str] = []

    def flush():
        if lit:
            tokens.append(("lit", "".join(lit)))
            lit.clear()

    i, n = 0, len(seg)
    while i < n:
        c = seg[i]
        if c == "*":
            flush()
            if not tokens or tokens[-1][0] != "star":
                tokens.append(("star", None))
        elif c == "?":
            flush()
            tokens.append(("one", None))
        elif c == "[":
            j = seg.find("]", i + 1)
            if j < 0:
                raise OscError("unknown_address", "malformed address pattern: '[' without ']'")
            body = seg[i + 1:j]
            neg = body.startswith("!")
            body = body[1:] if neg else body
            if not body:
                raise OscError("unknown_address", "malformed address pattern: an empty [] set")
            chars, ranges, k = set(), [], 0
            while k < len(body):
                if k + 2 < len(body) and body[k + 1] == "-":
                    ranges.append((body[k], body[k + 2]))
                    k += 3
                else:
                    chars.add(body[k])
                    k += 1
            flush()
            tokens.append(("set", (neg, frozenset(chars), tuple(ranges))))
            i = j
        elif c == "{":
            j = seg.find("}", i + 1)
            if j < 0:
                raise OscError("unknown_address", "malformed address pattern: '{' without '}'")
            flush()
            tokens.append(("alt", tuple(sorted(set(seg[i + 1:j].split(","))))))
            i = j
        elif c in "]}":
            raise OscError("unknown_address", f"malformed address pattern: '{c}' without its opening bracket")
        else:
            lit.append(c)
        i += 1
    flush()
    return tokens


def _segment_matches(tokens: list, s: str) -> bool:
    """Whether a name matches a segment's tokens: the set of positions reachable so far, token by token
    (an NFA run: time linear in the tokens times the name's length, whatever the pattern)."""
    cur = {0}
    n = len(s)
    for kind, data in tokens:
        if kind == "star":
            cur = set(range(min(cur), n + 1))
        elif kind == "lit":
            cur = {j + len(data) for j in cur if s.startswith(data, j)}
        elif kind == "one":
            cur = {j + 1 for j in cur if j < n}
        elif kind == "set":
            neg, chars, ranges = data
            cur = {j + 1 for j in cur
                   if j < n and ((s[j] in chars or any(a <= s[j] <= b for a, b in ranges)) != neg)}
        else:  # alt
            cur = {j + len(a) for j in cur for a in data if s.startswith(a, j)}
        if not cur:
            return False
    return n in cur


def match_addresses(pattern: str, addresses) -> list[str]:
    """The addresses (in their order) that the OSC 1.0 address pattern ``pattern`` matches.

    Raises :class:`OscError` (``unknown_address``) for a malformed pattern.

    >>> match_addresses("/voice[12]/{cutoff,q}", ["/voice1/cutoff", "/voice2/q", "/voice3/q", "/voice1/q/ramp"])
    ['/voice1/cutoff', '/voice2/q']
    """
    if len(pattern) > _MAX_PATTERN:
        raise OscError("unknown_address", f"address pattern longer than {_MAX_PATTERN} characters")
    parts = pattern.split("/")
    segs = [None if not is_pattern(p) and not any(c in p for c in "]}") else _segment_tokens(p) for p in parts]
    memo: dict = {}
    out = []
    for address in addresses:
        names = address.split("/")
        if len(names) != len(parts):
            continue
        for k, (want, name) in enumerate(zip(parts, names)):
            tokens = segs[k]
            if tokens is None:
                if want != name:
                    break
                continue
            key = (k, name)
            hit = memo.get(key)
            if hit is None:
                hit = memo[key] = _segment_matches(tokens, name)
            if not hit:
                break
        else:
            out.append(address)
    return out


def _hint(text):
    return f": {text}" if text else ""


def _number(value, unit: str, what: str) -> float:
    if isinstance(value, (bytes, bytearray, list, tuple)) or value is None:
        raise OscError("bad_args", f"{what} must be a number, got {_typename(value)}")
    try:
        v = parse_value(value, unit)
    except UnitError as e:
        raise OscError("bad_args", f"{what}: {e}") from None
    if not math.isfinite(v):
        raise OscError("bad_args", f"{what} is not a finite number")
    return v


def _typename(value) -> str:
    if value is None:
        return "nil"
    if isinstance(value, (bytes, bytearray)):
        return "a blob"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _arity(args, lo: int, hi: int, usage: str) -> None:
    if not lo <= len(args) <= hi:
        raise OscError("bad_args", f"expected {usage}, got {len(args)} argument(s)")


# ---------------------------------------------------------------- the clock
def wall_offset(clock: Callable[[], float] = time.monotonic, tries: int = 5) -> float:
    """``time.time() - clock()``, from the reading pair with the smallest gap."""
    best = None
    for _ in range(tries):
        c0 = clock()
        w = time.time()
        c1 = clock()
        if best is None or c1 - c0 < best[0]:
            best = (c1 - c0, w - 0.5 * (c0 + c1))
    return best[1]


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _grow_rcvbuf(sock: socket.socket, size: int) -> None:
    """Ask for a ``size``-byte receive buffer (best effort)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    except OSError:
        pass
    # Linux reports twice what it grants; past net.core.rmem_max only root may force it
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    if force is not None and sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < size:
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except OSError:
            pass


def bind_udp(host: str, port: int, who: str, rcvbuf: int | None = None) -> socket.socket:
    """A UDP socket bound to ``(host, port)`` (IPv6 when ``host`` has a colon), 0.2 s receive timeout.

    Shared by the OSC and Wekinator servers: a warning names ``who`` when the host is not a loopback
    address (reachable from other machines); ``rcvbuf`` asks for a larger receive buffer; on a bind
    error the socket is closed and the ``OSError`` goes to the caller. The timeout lets a receive loop
    wake to see its server stopped.
    """
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("%s listening on %s: reachable from other machines", who, host)
    sock = socket.socket(_family(host), socket.SOCK_DGRAM)
    try:
        if rcvbuf:
            _grow_rcvbuf(sock, rcvbuf)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.settimeout(0.2)
    return sock


class _Bucket:
    """A token bucket: ``rate`` per second, bursts of ``burst``."""

    def __init__(self, rate: float, burst: float):
        self.rate, self.burst = float(rate), float(burst)
        self.tokens, self.t = float(burst), time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
            self.t = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True
            return False


# ---------------------------------------------------------------- the server
class OscServer:
    """Receives OSC on UDP (and TCP, if asked) and drives a running player's engine.

    Args:
        player: owns the running engine: ``player.engine`` (read anew for
            every packet, since it may be swapped), ``player.frame_at(t)``
            (the frame heard at time ``t`` of ``player.clock``, or of
            ``time.monotonic`` when the player has no clock) and
            ``player.sample_rate``. A player with ``schedule(ev, frame)``
            (see :mod:`patchlib.realtime`) gets the events; otherwise they go
            to ``player.engine.schedule`` with ``frame_at`` read as an engine frame.
        host: address to bind; 127.0.0.1 unless asked (``0.0.0.0``: every interface).
        port: UDP port (0: any free port; see :attr:`address`).
        tcp: also listen on TCP, on the UDP port's number (see ``tcp_port``).
        tcp_port: listen on TCP on this port too (0: any free port; see
            :attr:`tcp_address`); None: UDP only.
        tcp_framing: ``"slip"`` (OSC 1.1, python-osc's default) or ``"size"``
            (OSC 1.0: an int32 length before each packet).
        max_clients: TCP connections at once (more are closed at once, counted ``tcp_refused``).
        max_subscribers: clients subscribed with ``/patch/notify 1`` at once.
        max_packet: bytes; a bigger packet is dropped and counted (``oversized``).
        latency: seconds added to every bundle timetag (see the module doc).
        max_ahead: seconds; a timetag further ahead is refused.
        rcvbuf: requested socket receive buffer, bytes.
        error_rate: ``/error`` replies per second at most (bursts of the same number).
        query_rate: queries and edits per second at most (the rest are refused as ``busy``).
        clamp: clamp out-of-range values into the range and apply them
            (answering ``/error`` once per param) instead of refusing them.
        patch_dir: folder ``/patch/load`` and ``/patch/save`` are confined to
            (default: the running patch's folder, ``engine.spec.base_dir``).
    """

    def __init__(self, player, host: str = "127.0.0.1", port: int = DEFAULT_PORT, tcp: bool = False, *,
                 max_packet: int = 16384, latency: float = 0.0, max_ahead: float = 60.0,
                 rcvbuf: int = 4 << 20, error_rate: float = 50.0, query_rate: float = 50.0,
                 clamp: bool = False, patch_dir: str | None = None, tcp_port: int | None = None,
                 tcp_framing: str = "slip", max_clients: int = 16, max_subscribers: int = 16):
        if tcp_framing not in ("slip", "size"):
            raise ValueError(f"tcp_framing must be 'slip' or 'size', not {tcp_framing!r}")
        if not 16 <= int(max_packet) <= 65536:
            raise ValueError("max_packet must be 16..65536 bytes")
        self.player = player
        self.host, self.port = host, int(port)
        self.tcp = bool(tcp) or tcp_port is not None
        self.tcp_port = None if tcp_port is None else int(tcp_port)
        self.tcp_framing = tcp_framing
        self.max_clients = int(max_clients)
        self.max_subscribers = int(max_subscribers)
        self.max_packet = int(max_packet)
        self.latency = float(latency)
        self.max_ahead = float(max_ahead)
        self.rcvbuf = int(rcvbuf)
        self.clamp = bool(clamp)
        self.patch_dir = patch_dir
        #: live graph edits: ``callable(address, args) -> reply args (or None)``; raise to refuse
        self.on_edit: Callable[[str, list], Any] | None = None
        self._clock = getattr(player, "clock", None) or time.monotonic
        self._errors_bucket = _Bucket(error_rate, max(1.0, error_rate))
        self._query_bucket = _Bucket(query_rate, max(1.0, query_rate))
        self._lock = threading.Lock()
        self._counts = {"received": 0, "messages": 0, "applied": 0, "queries": 0, "edits": 0, "bad_packets": 0,
                        "dropped": 0, "late": 0, "replies": 0, "replies_suppressed": 0, "notifications": 0,
                        "tcp_connections": 0, "tcp_refused": 0}
        self._errors = {k: 0 for k in ERROR_KINDS}
        self._clamped_once: set = set()
        self._routes_for = None
        self._routes: dict[str, tuple] = {}
        self._offset = 0.0
        self._offset_at = -1e9
        self._sock: socket.socket | None = None
        self._jobs: queue.Queue = queue.Queue(maxsize=4096)
        self._threads: list[threading.Thread] = []
        self._running = False
        self._handle_lock = threading.Lock()  # one packet at a time, whichever socket it came from
        self._patterns: dict[str, list] = {}  # address pattern -> [(address, route)], for self._routes
        self._subscribers: tuple = ()  # replaced whole (read without a lock by the receive threads)
        self._pending: dict = {}  # (node, param) -> value, notifications not yet sent
        self._tcp_sock: socket.socket | None = None
        self._peers: set = set()
        self._logged_internal = False

    # ------------------------------------------------------------ life cycle
    def start(self) -> "OscServer":
        """Bind and start the receive and reply threads."""
        if self._running:
            return self
        sock = bind_udp(self.host, self.port, "OSC server", self.rcvbuf)
        fam = sock.family
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._offset, self._offset_at = wall_offset(self._clock), time.monotonic()
        self._running = True
        self._threads = [threading.Thread(target=self._recv_loop, name="osc-recv", daemon=True),
                         threading.Thread(target=self._reply_loop, name="osc-reply", daemon=True)]
        if self.tcp:
            try:
                self._start_tcp(fam)
            except OSError:
                self._running = False
                self._sock = None
                sock.close()
                raise
            self._threads.append(threading.Thread(target=self._accept_loop, name="osc-tcp", daemon=True))
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        """Stop both threads and close the socket (idempotent)."""
        if not self._running:
            return
        self._running = False
        self._jobs.put(None)
        for t in self._threads:
            t.join(timeout=2.0)
        if self._tcp_sock is not None:
            self._tcp_sock.close()
            self._tcp_sock = None
        for peer in list(self._peers):
            peer.close()
        self._threads = []
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> "OscServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` actually bound (the port is known after :meth:`start`)."""
        return self.host, self.port

    @property
    def tcp_address(self) -> tuple[str, int] | None:
        """``(host, port)`` of the TCP listener (None without TCP; the port is known after :meth:`start`)."""
        return (self.host, self.tcp_port) if self.tcp else None

    def _start_tcp(self, fam) -> None:
        ls = socket.socket(fam, socket.SOCK_STREAM)
        try:
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ls.bind((self.host, self.port if self.tcp_port is None else self.tcp_port))
            ls.listen(8)
        except OSError:
            ls.close()
            raise
        ls.settimeout(0.2)
        self._tcp_sock = ls
        self.tcp_port = ls.getsockname()[1]

    def _accept_loop(self) -> None:
        ls = self._tcp_sock
        while self._running:
            try:
                conn, addr = ls.accept()
            except socket.timeout:
                continue
            except OSError:
                if not self._running:
                    break
                time.sleep(0.01)
                continue
            if len(self._peers) >= self.max_clients:
                self._count("tcp_refused")
                conn.close()
                continue
            conn.settimeout(0.2)
            peer = _TcpPeer(conn, addr, self.tcp_framing)
            self._peers.add(peer)
            self._count("tcp_connections")
            threading.Thread(target=self._tcp_reader, args=(peer,), name="osc-tcp-client", daemon=True).start()

    def _tcp_reader(self, peer: "_TcpPeer") -> None:
        conn, buf, skipping = peer.conn, bytearray(), False
        limit = self.max_packet
        try:
            while self._running and peer.open:
                try:
                    chunk = conn.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                buf += chunk
                if peer.framing == "size":
                    while len(buf) >= 4:
                        size = int.from_bytes(buf[:4], "big", signed=True)
                        if not 0 <= size <= limit:  # no way to find the next packet: close
                            self._count("received")
                            self._bad_packet(peer, OscError("oversized", f"packet over {limit} bytes"), "")
                            return
                        if len(buf) < 4 + size:
                            break
                        frame = bytes(buf[4:4 + size])
                        del buf[:4 + size]
                        self._packet(frame, peer)
                    continue
                while True:  # SLIP: packets between END bytes
                    i = buf.find(slip.END)
                    if i < 0:
                        if len(buf) > 2 * limit + 2:  # over the limit even if every byte were escaped
                            if not skipping:
                                self._count("received")
                                self._bad_packet(peer, OscError("oversized", f"packet over {limit} bytes"), "")
                            skipping = True
                            buf.clear()
                        break
                    frame = bytes(buf[:i])
                    del buf[:i + 1]
                    if skipping:
                        skipping = False
                        continue
                    if not frame:
                        continue  # END END between packets
                    if len(frame) > 2 * limit or len(frame) > limit and len(frame) - frame.count(slip.ESC) > limit:
                        self._count("received")
                        self._bad_packet(peer, OscError("oversized", f"packet over {limit} bytes"), "")
                        continue
                    if not slip.is_valid(frame):
                        self._count("received")
                        self._bad_packet(peer, OscError("malformed", "bad SLIP escape"), "")
                        continue
                    frame = frame.replace(slip.ESC + slip.ESC_END, slip.END).replace(slip.ESC + slip.ESC_ESC,
                                                                                      slip.ESC)
                    self._packet(frame, peer)
        finally:
            peer.close()
            self._peers.discard(peer)
            if peer in self._subscribers:
                self._subscribers = tuple(a for a in self._subscribers if a is not peer)

    # ------------------------------------------------------------ counters
    @property
    def stats(self) -> dict:
        """Counters (a snapshot).

        ``received`` packets, ``messages`` in them, ``applied`` events queued to
        the engine, ``queries``, ``edits``, ``errors`` by kind and
        ``errors_total``, ``bad_packets`` (packets with at least one error),
        ``dropped`` (packets thrown away unparsed: malformed or oversized),
        ``late`` bundles, ``replies`` sent and ``replies_suppressed`` by the
        rate limit, ``rcvbuf`` (bytes granted) and ``kernel_drops`` (datagrams
        the kernel dropped for a full buffer; -1 when unknown), ``notifications``
        sent, ``subscribers`` now, ``tcp_connections`` accepted so far,
        ``tcp_clients`` connected now, ``tcp_refused`` (over ``max_clients``).
        """
        with self._lock:
            out = dict(self._counts)
            out["errors"] = {k: v for k, v in self._errors.items() if v}
            out["errors_total"] = sum(self._errors.values())
        sock = self._sock
        out["rcvbuf"] = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) if sock else 0
        out["kernel_drops"] = _kernel_drops(sock) if sock else -1
        out["subscribers"] = len(self._subscribers)
        out["tcp_clients"] = len(self._peers)
        return out

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    # ------------------------------------------------------------ receiving
    def _recv_loop(self) -> None:
        sock = self._sock
        buf = bytearray(self.max_packet + 1)  # one byte more: a longer datagram shows as oversized
        view = memoryview(buf)
        while self._running:
            try:
                n, addr = sock.recvfrom_into(buf)
            except socket.timeout:
                continue
            except OSError:
                if not self._running:
                    break
                time.sleep(0.01)  # e.g. ICMP port unreachable after a reply: keep going
                continue
            if n > self.max_packet:
                self._count("received")
                self._bad_packet(addr, OscError("oversized", f"packet over {self.max_packet} bytes"), "")
                continue
            self._packet(bytes(view[:n]), addr)

    def _packet(self, data: bytes, addr) -> None:
        """One packet from any socket: counted, handled, and never an exception out of here."""
        try:
            self._count("received")
            self.handle_packet(data, addr)
        except Exception as e:  # the last line of defence: the thread never dies
            if not self._logged_internal:  # once: a flood of one bug must not flood the terminal
                self._logged_internal = True
                log.exception("OSC packet from %s (further internal errors are only counted)", addr)
            self._bad_packet(addr, OscError("internal", f"internal error: {type(e).__name__}"), "")

    def _bad_packet(self, addr, err: OscError, address: str) -> None:
        with self._lock:
            self._counts["dropped"] += 1
            self._counts["bad_packets"] += 1
            self._errors[err.kind] += 1
        self._reply_error(addr, address, err.reason)

    def handle_packet(self, data: bytes, addr) -> None:
        """Parse one datagram and act on it (the receive threads' work; callable directly in tests)."""
        with self._handle_lock:
            self._handle_packet(data, addr)

    def _handle_packet(self, data: bytes, addr) -> None:
        if len(data) % 4:  # OSC pads everything to 4 bytes: a cut packet shows here
            self._bad_packet(addr, OscError("malformed", f"packet of {len(data)} bytes, not a multiple of 4"),
                             _peek_address(data))
            return
        if data.startswith(_BUNDLE):
            try:
                _check_bundle(data, 0)
                items = []
                _flatten(OscBundle(data), items, 0)
                if not items:
                    raise ValueError("a bundle without any message")
            except Exception as e:
                self._bad_packet(addr, OscError("malformed", f"malformed bundle: {_short(e)}"), "")
                return
        elif data.startswith(b"/"):
            try:
                _check_message(data)
                items = [(None, OscMessage(data))]
            except Exception as e:
                self._bad_packet(addr, OscError("malformed", f"malformed message: {_short(e)}"),
                                 _peek_address(data))
                return
        else:
            self._bad_packet(addr, OscError("malformed", "not an OSC message or bundle"), "")
            return
        self._check_offset()
        engine = self.player.engine
        if self._routes_for is not engine:
            self._routes = build_routes(engine)
            self._patterns = {}
            self._routes_for = engine
        frames: dict = {}
        bad = False
        for tag, msg in items:
            try:
                bad |= self._message(engine, msg, tag, frames, addr)
            except OscError as e:
                bad = True
                self._refuse(addr, msg.address, e)
        with self._lock:
            self._counts["messages"] += len(items)
            if bad:
                self._counts["bad_packets"] += 1

    def _refuse(self, addr, address: str, e: OscError) -> None:
        with self._lock:
            self._errors[e.kind] += 1
        self._reply_error(addr, address, e.reason)

    def _message(self, engine, msg, tag, frames, addr) -> bool:
        """Act on one message; True when a pattern's matches were refused (each answered here)."""
        address = msg.address
        route = self._routes.get(address)
        if route is None:
            if address in QUERIES or address in EDITS:
                if not self._query_bucket.take():
                    raise OscError("busy", "too many queries and edits: slow down")
                try:
                    self._jobs.put_nowait((address, list(msg.params), addr))
                except queue.Full:
                    raise OscError("busy", "the server is busy: try again") from None
                return False
            if is_pattern(address):
                bad = False
                for a, r in self._match(address):
                    try:
                        self._apply(engine, r, msg.params, tag, frames, addr)
                    except OscError as e:
                        bad = True
                        self._refuse(addr, a, e)
                return bad
            raise explain_address(engine, address)
        self._apply(engine, route, msg.params, tag, frames, addr)
        return False

    def _match(self, pattern: str) -> list:
        """``[(address, route)]`` that an address pattern matches (cached per route table)."""
        hit = self._patterns.get(pattern)
        if hit is None:
            hit = [(a, self._routes[a]) for a in match_addresses(pattern, self._routes)]
            if len(self._patterns) >= _PATTERN_CACHE:
                self._patterns.clear()
            self._patterns[pattern] = hit
        if not hit:
            raise OscError("unknown_address", f"no address of the patch matches the pattern '{pattern}'")
        return hit

    def _apply(self, engine, route, args, tag, frames, addr) -> None:
        action, node, param, spec = route
        if action == "set" and not args and param in getattr(type(engine.nodes[node]), "events", {}):
            action = param  # /env/release: adsr has a 'release' param and a 'release' event
        if action == "set":
            _arity(args, 1, 1, "one value")
            ev = Event(0.0, "ramp", node, param, self._value(node, param, spec, args[0], addr), None)
        elif action == "ramp":
            _arity(args, 2, 3, "TARGET SECONDS [lin|exp]")
            v = self._value(node, param, spec, args[0], addr)
            secs = _number(args[1], "s", "seconds")
            if not 0.0 <= secs <= _MAX_RAMP_S:
                raise OscError("out_of_range", f"ramp time {secs:g} s is not between 0 and {_MAX_RAMP_S:g} s")
            curve = args[2] if len(args) == 3 else "lin"
            if curve not in ("lin", "exp"):
                raise OscError("bad_args", f"curve must be 'lin' or 'exp', got {curve!r}")
            ev = Event(0.0, "ramp", node, param, v, secs, curve)
        elif action == "trigger":
            _arity(args, 0, 1, "[VELOCITY]")
            vel = _number(args[0], "x", "velocity") if args else 1.0
            if not 0.0 <= vel <= 1.0:
                raise OscError("out_of_range", f"velocity {vel:g} is not between 0 and 1")
            ev = Event(0.0, "trigger", node, value=vel)
        elif action == "note":
            _arity(args, 1, 2, "PITCH [VELOCITY]")
            pitch = self._pitch(args[0])
            vel = _number(args[1], "x", "velocity") if len(args) == 2 else 1.0
            if not 0.0 <= vel <= 1.0:
                raise OscError("out_of_range", f"velocity {vel:g} is not between 0 and 1")
            ev = (Event(0.0, "note", node, value=vel, pitch=pitch) if vel > 0
                  else Event(0.0, "note_off", node, pitch=pitch))
        elif action == "note_off":
            _arity(args, 0, 1, "[PITCH]")
            ev = Event(0.0, "note_off", node, pitch=self._pitch(args[0]) if args else None)
        else:  # release, all_off
            _arity(args, 0, 0, "no arguments")
            ev = Event(0.0, action, node)
        frame = frames.get(tag)
        if frame is None:
            frame = frames[tag] = self._frame_of(tag)
        self._schedule(engine, ev, frame)
        self._counts["applied"] += 1  # only the thread holding _handle_lock writes it
        if self._subscribers and ev.action == "ramp":
            self._notify(node, param, ev.value)

    def _notify(self, node: str, param: str, value: float) -> None:
        with self._lock:
            wake = not self._pending
            self._pending[(node, param)] = value
        if wake:
            try:
                self._jobs.put_nowait(("/param", None, None))
            except queue.Full:
                pass  # the reply thread flushes after every job anyway

    def _value(self, node, param, spec, raw, addr) -> float:
        v = _number(raw, spec.unit, f"{node}/{param}")
        lo, hi = spec.range
        if lo <= v <= hi:
            return v
        unit = f" {spec.unit}" if spec.unit else ""
        reason = f"{node}/{param} = {v:g}{unit} is out of range [{lo:g}, {hi:g}]{unit}"
        if not self.clamp:
            raise OscError("out_of_range", reason)
        if (node, param) not in self._clamped_once:  # clamped, and said once per param
            self._clamped_once.add((node, param))
            with self._lock:
                self._errors["out_of_range"] += 1
            self._reply_error(addr, f"/{node}/{param}", reason + " (clamped)")
        return min(max(v, lo), hi)

    def _pitch(self, raw) -> float:
        f = _number(raw, "Hz", "pitch")
        nyq = self.player.sample_rate / 2
        if not 0.0 < f < nyq:
            raise OscError("out_of_range", f"pitch {f:g} Hz is not between 0 and {nyq:g} Hz")
        return f

    # ------------------------------------------------------------ timing
    def _check_offset(self) -> None:
        if time.monotonic() - self._offset_at > 1.0:
            self._offset, self._offset_at = wall_offset(self._clock), time.monotonic()

    def ntp_to_clock(self, unix_time: float) -> float:
        """A timetag (as Unix seconds, as python-osc reads it) as a time on the player's clock."""
        return unix_time - self._offset

    def _frame_of(self, tag) -> int:
        """The frame a bundle timetag names, or ASAP (counting late bundles)."""
        if tag is None or tag == osc_types.IMMEDIATELY:
            return ASAP
        t = self.ntp_to_clock(tag) + self.latency
        if t - self._clock() > self.max_ahead:
            raise OscError("too_far_ahead", f"timetag {t - self._clock():.3f} s ahead "
                                            f"(at most {self.max_ahead:g} s)")
        frame = int(self.player.frame_at(t))
        nxt = getattr(self.player, "next_frame", None)
        if nxt is None:
            nxt = self.player.engine.frame
        if frame < nxt:
            self._count("late")
            return ASAP
        return frame

    def _schedule(self, engine, ev: Event, frame: int) -> None:
        sched = getattr(self.player, "schedule", None)
        if sched is not None:
            try:
                sched(ev, None if frame == ASAP else frame)
            except ValueError as e:  # the patch was swapped under us and lost the node
                raise OscError("unknown_node", str(e)) from None
            except EngineBusy as e:
                raise OscError("busy", str(e)) from None
        else:
            try:
                engine.schedule(ev, frame)
            except EngineBusy as e:
                raise OscError("busy", str(e)) from None

    # ------------------------------------------------------------ replies
    def _reply_error(self, addr, address: str, reason: str) -> None:
        if not self._errors_bucket.take():
            self._count("replies_suppressed")
            return
        try:
            self._jobs.put_nowait(("/error", [address or "", reason], addr))
        except queue.Full:
            self._count("replies_suppressed")

    def _reply_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            address, args, addr = job
            try:
                if address == "/param":
                    pass  # the notifications are sent below
                elif address == "/error":
                    self._send(addr, "/error", args)
                elif address in QUERIES:
                    self._count("queries")
                    self._query(address, args, addr)
                else:
                    self._count("edits")
                    self._edit(address, args, addr)
            except OscError as e:
                with self._lock:
                    self._errors[e.kind] += 1
                self._reply_error(addr, address, e.reason)
            except Exception as e:  # a bug in a query or an edit handler must not stop the replies
                log.exception("OSC %s", address)
                with self._lock:
                    self._errors["internal"] += 1
                self._reply_error(addr, address, f"internal error: {type(e).__name__}: {e}")
            if self._pending:
                self._flush_notifications()

    def _flush_notifications(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        subs = self._subscribers
        for (node, param), value in pending.items():
            for sub in subs:
                if self._send(sub, "/param", [node, param, float(value)]):
                    self._count("notifications")

    def _send(self, addr, address: str, args) -> bool:
        b = OscMessageBuilder(address)
        for a in args:
            if isinstance(a, bool) or a is None:
                a = str(a)
            if isinstance(a, float):
                b.add_arg(a, "f")
            elif isinstance(a, int):
                b.add_arg(a, "i") if -2**31 <= a < 2**31 else b.add_arg(float(a), "f")
            else:
                b.add_arg(str(a), "s")
        sock = self._sock
        if sock is None:
            return False
        try:
            if isinstance(addr, _TcpPeer):
                addr.send(b.build().dgram)
            else:
                sock.sendto(b.build().dgram, addr)
        except OSError:
            self._count("replies_suppressed")
            return False
        if address != "/param":
            self._count("replies")
        return True

    def _query(self, address: str, args, addr) -> None:
        engine = self.player.engine
        if address == NOTIFY:
            _arity(args, 1, 1, "1 or 0")
            on = args[0]
            if isinstance(on, str) or on not in (0, 1):  # True == 1, 1.0 == 1
                raise OscError("bad_args", f"/patch/notify takes 1 (subscribe) or 0 (unsubscribe), got {on!r}")
            subs = tuple(a for a in self._subscribers if a != addr)
            if on:
                if len(subs) >= self.max_subscribers:
                    raise OscError("busy", f"{self.max_subscribers} clients are subscribed already")
                subs += (addr,)
            self._subscribers = subs
            self._send(addr, "/done", [address, 1 if on else 0])
        elif address == "/patch/nodes":
            _arity(args, 0, 0, "no arguments")
            for name, node in engine.nodes.items():
                self._send(addr, "/patch/node", [name, getattr(node, "type_name", type(node).__name__)])
            self._send(addr, "/done", [address, len(engine.nodes)])
        elif address == "/patch/params":
            _arity(args, 1, 1, "NODE")
            name = args[0]
            if not isinstance(name, str) or name not in engine.nodes:
                raise OscError("unknown_node", f"no node {name!r}" + _hint(suggest(str(name), engine.nodes)))
            states = engine.params.get(name, {})
            for pname, ps in states.items():
                p = ps.spec
                self._send(addr, "/patch/param", [name, pname, float(ps.value), float(p.range[0]),
                                                  float(p.range[1]), p.unit, p.curve, float(p.default), p.doc])
            self._send(addr, "/done", [address, len(states), name])
        else:
            _arity(args, 0, 0, "no arguments")
            edges = list(_edges(engine.spec))
            for e in edges:
                self._send(addr, "/patch/edge", list(e))
            self._send(addr, "/done", [address, len(edges)])

    def _edit(self, address: str, args, addr) -> None:
        handler = self.on_edit
        if handler is None:
            raise OscError("not_available", f"{address}: live graph edits are not yet available")
        if address in ("/patch/load", "/patch/save"):
            _arity(args, 1, 1, "PATH")
            base = self.patch_dir or self.player.engine.spec.base_dir
            args = [resolve_patch_path(base, args[0])]
        try:
            result = handler(address, list(args))
        except OscError:
            raise
        except Exception as e:
            raise OscError("edit_failed", f"{address}: {e}") from None
        if result is None:
            result = []
        elif not isinstance(result, (list, tuple)):
            result = [result]
        self._send(addr, "/done", [address, *result])


# ---------------------------------------------------------------- helpers
def _flatten(bundle, out: list, depth: int) -> None:
    """A bundle's messages with their timetags (a nested bundle keeps its own)."""
    if depth > 8:
        raise ValueError("bundles nested more than 8 deep")
    for item in bundle:
        if isinstance(item, OscBundle):
            _flatten(item, out, depth + 1)
        else:
            out.append((bundle.timestamp, item))


def _edges(spec):
    """``(src, src_port, dst, dst_port_or_param, kind)`` for every connection of the patch."""
    for name, ns in spec.nodes.items():
        for port, (src, sport) in ns.inputs.items():
            yield src, sport, name, port, "input"
        for pname, s in ns.params.items():
            if s.kind == "mod":
                yield s.source[0], s.source[1], name, pname, "param"


_FIXED = {"i": 4, "f": 4, "r": 4, "m": 4, "c": 4, "h": 8, "d": 8, "t": 8, "T": 0, "F": 0, "N": 0, "I": 0,
          "[": 0, "]": 0}


#: the type tags python-osc parses (it logs a warning to the root logger for any other, and skips it)
_KNOWN_TAGS = frozenset("ihfdsbrmtTFN[]")


def _check_message(data: bytes) -> None:
    """Refuse what python-osc would get wrong or log about: a type tag it does not know (it warns on the
    root logger), fixed-size args that do not fill the message exactly (it pads a cut float with zeros)."""
    a = data.find(b"\x00")
    if a < 0:
        return
    start = (a + 4) & ~3
    if start >= len(data):
        return  # no type tags: no args
    b = data.find(b"\x00", start)
    if b < 0 or data[start:start + 1] != b",":
        return  # python-osc says what is wrong
    tags = data[start + 1:b].decode("ascii", "replace")
    for t in tags:
        if t not in _KNOWN_TAGS:
            raise ValueError(f"unknown type tag {t!r}")
    if all(t in _FIXED for t in tags):
        want = ((b + 4) & ~3) + sum(_FIXED[t] for t in tags)
        if want != len(data):
            raise ValueError(f"{len(data)} bytes where its type tags ',{tags}' make {want}")


def _check_bundle(data: bytes, depth: int) -> None:
    """Walk a bundle's elements (sizes, kinds) before python-osc does: it logs a warning to the root logger
    for an element that is neither a message nor a bundle."""
    if depth > 8:
        raise ValueError("bundles nested more than 8 deep")
    if len(data) < 16:
        raise ValueError("a bundle shorter than its header")
    i, n = 16, len(data)
    while i < n:
        if i + 4 > n:
            raise ValueError("a cut element size")
        size = struct.unpack_from(">i", data, i)[0]
        i += 4
        if size <= 0 or size % 4 or i + size > n:
            raise ValueError(f"an element of {size} bytes where {n - i} remain")
        elem = data[i:i + size]
        if elem.startswith(_BUNDLE):
            _check_bundle(elem, depth + 1)
        elif elem.startswith(b"/"):
            _check_message(elem)
        else:
            raise ValueError("an element that is neither a message nor a bundle")
        i += size


class _TcpPeer:
    """A TCP client: the reply address of what it sends (replies and notifications go back framed)."""

    def __init__(self, conn: socket.socket, addr, framing: str):
        self.conn, self.addr, self.framing = conn, addr, framing
        self.lock = threading.Lock()  # one writer at a time
        self.open = True

    def send(self, dgram: bytes) -> None:
        frame = slip.encode(dgram) if self.framing == "slip" else struct.pack(">i", len(dgram)) + dgram
        with self.lock:
            self.conn.sendall(frame)

    def close(self) -> None:
        if self.open:
            self.open = False
            try:
                self.conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.conn.close()

    def __repr__(self) -> str:
        return f"tcp:{self.addr[0]}:{self.addr[1]}"


def _peek_address(data: bytes) -> str:
    """The address of a message that did not parse, if it has a readable one."""
    end = data.find(b"\x00", 0, 256)
    if end <= 0:
        return ""
    try:
        text = data[:end].decode("ascii")
    except UnicodeDecodeError:
        return ""
    return text if text.isprintable() else ""


def _short(e: Exception) -> str:
    text = str(e) or type(e).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _kernel_drops(sock) -> int:
    """Datagrams the kernel dropped for this socket (Linux ``/proc/net/udp``), or -1."""
    try:
        inode = str(os.fstat(sock.fileno()).st_ino)
    except OSError:
        return -1
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table, encoding="ascii") as fh:
                next(fh)
                for line in fh:
                    cols = line.split()
                    if len(cols) > 12 and cols[9] == inode:
                        return int(cols[12])
        except (OSError, StopIteration, ValueError):
            continue
    return -1
