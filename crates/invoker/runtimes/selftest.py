#!/usr/bin/python3
"""Black-box self-test for the Brisk runtime proxies (developer aid).

Starts each proxy on a temporary Unix socket with pipes for stdout/stderr and
drives /init and /run over HTTP (socket-activated, as the invoker starts them:
the socket listens before the proxy starts and is its stdin, BRISK_LISTEN_FD=0;
one check per proxy also runs it the manual way, binding BRISK_SOCKET itself), checking the behaviours listed in
runtime-conformance.md and docs/runtime-protocol.md, then measures warm /run
latency for a noop action over one keep-alive connection.

    /usr/bin/python3 crates/invoker/runtimes/selftest.py [node|python|native ...] [--bench N]

Standard library only. Exit status 0 when every check passed.
"""

import base64
import http.client
import io
import json
import os
import select
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
NODE = os.environ.get("NODE", "/usr/bin/node")
PYTHON = os.environ.get("PYTHON", "/usr/bin/python3")
SENTINEL = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"
NOT_DICT = "The action did not return a dictionary or array."
SNOWMEN = "❄ ☃ ❄"

RESULTS = {"pass": 0, "fail": 0}
FAILURES = []


def check(name, cond, detail=""):
    if cond:
        RESULTS["pass"] += 1
        print("  ok    %s" % name)
    else:
        RESULTS["fail"] += 1
        FAILURES.append(name)
        print("  FAIL  %s %s" % (name, detail))
    return cond


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def new_id():
    return uuid.uuid4().hex


class Proxy:
    """One proxy process; collects its stdout/stderr lines. Socket-activated (the socket
    listens before the proxy starts and is its stdin) unless `activate` is false, when the
    proxy binds BRISK_SOCKET itself."""

    def __init__(self, argv, env=None, activate=True):
        self.dir = tempfile.mkdtemp(prefix="brisk-selftest-")
        self.sock = os.path.join(self.dir, "proxy.sock")
        full_env = dict(os.environ)
        for k in ("__OW_ALLOW_CONCURRENT", "BRISK_LISTEN_FD", "BRISK_SOCKET", "BRISK_PORT"):
            full_env.pop(k, None)
        # TMPDIR keeps the proxies' private code directories inside self.dir.
        full_env.update({"__OW_API_HOST": "https://brisk.test", "TMPDIR": self.dir})
        listener = None
        if activate:
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(self.sock)
            listener.listen(128)
            full_env["BRISK_LISTEN_FD"] = "0"
        else:
            full_env["BRISK_SOCKET"] = self.sock
        full_env.update(env or {})
        try:
            self.proc = subprocess.Popen(argv, stdin=listener or subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env, cwd=self.dir)
        finally:
            # The proxy is the socket's only holder: it closes when the proxy exits.
            if listener is not None:
                listener.close()
        self.lock = threading.Lock()
        self.raw = {"stdout": b"", "stderr": b""}
        self.lines = {"stdout": [], "stderr": []}
        self.fds = {self.proc.stdout.fileno(): "stdout", self.proc.stderr.fileno(): "stderr"}
        for fd in self.fds:
            os.set_blocking(fd, False)
        self.stop = False
        self.paused = False
        self.reader = threading.Thread(target=self._pump, daemon=True)
        self.reader.start()
        deadline = time.time() + 10
        while not activate:
            # Bound by the proxy itself: connect until it listens.
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(self.sock)
                s.close()
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    self.close()
                    raise RuntimeError("proxy did not start: %s" % " ".join(argv))
                time.sleep(0.001)
        # The readiness probe, as the invoker sends it (with activation, it waits in the
        # backlog until the proxy accepts).
        self.conn = UnixHTTPConnection(self.sock)
        try:
            self.ready = self.post("/ready", {})
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise RuntimeError("proxy did not start: %s: %s" % (" ".join(argv), e))

    def _pump(self):
        while not self.stop:
            if self.paused:
                time.sleep(0.01)
                continue
            try:
                select.select(list(self.fds), [], [], 0.05)
            except (OSError, ValueError):
                return
            self.drain()

    def drain(self):
        """Moves whatever is in the pipes into self.lines (call after a response)."""
        with self.lock:
            for fd, name in self.fds.items():
                while True:
                    try:
                        chunk = os.read(fd, 1 << 20)
                    except BlockingIOError:
                        break
                    except OSError:
                        break
                    if not chunk:
                        break
                    data = self.raw[name] + chunk
                    parts = data.split(b"\n")
                    self.raw[name] = parts.pop()
                    self.lines[name].extend(p.decode("utf-8", errors="replace") for p in parts)

    def post(self, path, body, conn=None, headers=None):
        conn = conn or self.conn
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        conn.request("POST", path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        raw = resp.read()
        self.last_logs_header = resp.getheader("X-Brisk-Logs")
        self.drain()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw

    def init(self, value, activation_id=None):
        if activation_id:
            value = dict(value)
            env = dict(value.get("env") or {})
            env["__OW_ACTIVATION_ID"] = activation_id
            value["env"] = env
        return self.post("/init", {"value": value})

    def run(self, value, activation_id=None, conn=None, headers=None, **extra):
        body = {
            "value": value,
            "namespace": "guest",
            "action_name": "/guest/test",
            "action_version": "0.0.1",
            "activation_id": activation_id or new_id(),
            "transaction_id": "tid-1",
            "deadline": str(int(time.time() * 1000) + 60000),
        }
        body.update(extra)
        return self.post("/run", body, conn=conn, headers=headers)

    def logs(self, activation_id, stream):
        """Lines tagged with the id (tag stripped), sentinel excluded, and whether it was seen."""
        tag = "\x01%s\x02" % activation_id
        # Stderr lines travel on stdout marked "\x03"; the stderr sentinel stays on stderr.
        err_tag = "\x01%s\x03" % activation_id
        with self.lock:
            tagged = [line[len(tag):] for line in self.lines[stream] if line.startswith(tag)]
            if stream == "stderr":
                moved = [line[len(err_tag):] for line in self.lines["stdout"] if line.startswith(err_tag)]
            else:
                moved = []
        seen = SENTINEL in tagged
        return moved + [line for line in tagged if line != SENTINEL], seen

    def untagged(self, stream):
        with self.lock:
            return [line for line in self.lines[stream] if not line.startswith("\x01")]

    def close(self):
        self.stop = True
        try:
            self.conn.close()
        except (OSError, AttributeError):
            pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.reader.join(timeout=2)
        self.proc.stdout.close()
        self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def expect_closed(fn):
    """True if the call fails because the server closed the connection."""
    try:
        fn()
    except (http.client.RemoteDisconnected, http.client.BadStatusLine, ConnectionError, http.client.IncompleteRead):
        return True
    except OSError:
        return True
    return False


def raw_exchange(p, data, n, pause=None, timeout=5):
    """Writes `data` (bytes, or a list of pieces sent `pause` seconds apart) on a fresh
    connection and reads `n` responses: [(status, headers, body)], plus whether the peer
    closed the connection afterwards."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(p.sock)
    for piece in data if isinstance(data, list) else [data]:
        s.sendall(piece)
        if pause:
            time.sleep(pause)
    buf = b""
    out = []
    closed = False
    while len(out) < n:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            lines = buf[:end].decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
            length = int(headers.get("content-length", "0"))
            if len(buf) >= end + 4 + length:
                out.append((status, headers, buf[end + 4 : end + 4 + length]))
                buf = buf[end + 4 + length :]
                continue
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            closed = True
            break
        buf += chunk
    if not closed:
        s.settimeout(0.3)
        try:
            closed = s.recv(1) == b""
        except socket.timeout:
            closed = False
    s.close()
    return out, closed


def run_during_another(p, slow_args, args):
    """Sends a run with `args` 100 ms into a run with `slow_args`, each on a connection of its
    own and both with the same deadline. Returns that deadline, the first run's body and the
    second run's (status, body)."""
    res = {}
    sent = int(time.time() * 1000)

    def slow():
        c = UnixHTTPConnection(p.sock)
        res["slow"] = p.run(slow_args, conn=c, deadline=str(sent + 60000))
        c.close()

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.1)
    c = UnixHTTPConnection(p.sock)
    st, body = p.run(args, conn=c, deadline=str(sent + 60000))
    c.close()
    t.join()
    return sent + 60000, res.get("slow", (0, {})), (st, body)


def framing_checks(kind, start):
    """HTTP/1.1 framing of the proxy's own server: pipelining, split and chunked bodies,
    Expect, Connection: close, malformed requests."""
    def req(path, body, extra=b""):
        data = json.dumps(body).encode()
        return b"POST " + path + b" HTTP/1.1\r\nHost: p\r\nContent-Length: " + str(len(data)).encode() + b"\r\n" + extra + b"\r\n" + data

    code = {"node": "function main(a) { return a; }", "python": "def main(a):\n    return a\n"}[kind]
    init = {"value": {"main": "main", "code": code, "binary": False}}
    run = lambda v: {"value": v, "activation_id": new_id()}
    p = start()
    try:
        out, closed = raw_exchange(p, req(b"/init", init) + req(b"/run", run({"n": 1})) + req(b"/run", run({"n": 2})), 3)
        bodies = [json.loads(b) for _, _, b in out]
        check("%s: pipelined requests answered in order on one connection" % kind,
              [st for st, _, _ in out] == [200, 200, 200] and bodies[1].get("n") == 1 and bodies[2].get("n") == 2 and not closed, (out, closed))

        whole = req(b"/run", run({"split": "x" * 5000}))
        out, _ = raw_exchange(p, [whole[:20], whole[20:90], whole[90:3000], whole[3000:]], 1, pause=0.02)
        check("%s: a request split across writes is read whole" % kind,
              len(out) == 1 and out[0][0] == 200 and json.loads(out[0][2]).get("split") == "x" * 5000, out)

        big = "y" * (3 << 20)
        out, _ = raw_exchange(p, req(b"/run", run({"big": big})), 1, timeout=20)
        check("%s: a 3 MB body is read whole" % kind, len(out) == 1 and out[0][0] == 200 and json.loads(out[0][2]).get("big") == big, [o[0] for o in out])

        data = json.dumps(run({"chunked": True})).encode()
        chunked = (b"POST /run HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n\r\n"
                   + b"%x\r\n" % 7 + data[:7] + b"\r\n" + b"%x;ext=1\r\n" % (len(data) - 7) + data[7:] + b"\r\n0\r\n\r\n")
        out, _ = raw_exchange(p, [chunked[:50], chunked[50:]], 1, pause=0.02)
        check("%s: a chunked body is decoded" % kind, len(out) == 1 and out[0][0] == 200 and json.loads(out[0][2]).get("chunked") is True, out)

        data = json.dumps(run({"many": "z" * (1 << 20)})).encode()
        pieces = [data[i : i + 4096] for i in range(0, len(data), 4096)]
        many = b"POST /run HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n\r\n" + b"".join(
            b"%x\r\n" % len(c) + c + b"\r\n" for c in pieces) + b"0\r\nX-Trailer: 1\r\n\r\n"
        out, _ = raw_exchange(p, [many[i : i + 1000] for i in range(0, len(many), 1000)], 1, timeout=20)
        check("%s: a 1 MB body in 257 chunks over 1000 writes is decoded, trailers skipped" % kind,
              len(out) == 1 and out[0][0] == 200 and json.loads(out[0][2]).get("many") == "z" * (1 << 20), [o[0] for o in out])

        out, closed = raw_exchange(p, req(b"/run", run({"c": 1}), b"Connection: close\r\n"), 1)
        check("%s: Connection: close is honoured" % kind, len(out) == 1 and out[0][0] == 200 and closed, (out, closed))

        out, closed = raw_exchange(p, b"NONSENSE\r\n\r\n", 1)
        check("%s: a malformed request line -> 400 and the connection closes" % kind,
              len(out) == 1 and out[0][0] == 400 and "error" in json.loads(out[0][2]) and closed, (out, closed))

        out, _ = raw_exchange(p, req(b"/run?x=1", run({"q": 1})), 1)
        check("%s: a query string does not change the route" % kind, len(out) == 1 and out[0][0] == 200, out)

        st, body = p.run({"after": 1})
        check("%s: the proxy still serves after all that" % kind, st == 200 and body.get("after") == 1, (st, body))
    finally:
        p.close()


def make_zip(files, modes=None):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = ((modes or {}).get(name, 0o644) & 0xFFFF) << 16
            zf.writestr(info, content)
    return buf.getvalue()


UNPACKED = []


def unpack(zip_bytes):
    """Does what the invoker does: unzip into a fresh directory."""
    d = tempfile.mkdtemp(prefix="brisk-selftest-code-")
    UNPACKED.append(d)
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as zf:
        zf.extractall(d)
    return d


def activation_checks(kind, start, src, main, args):
    """The readiness probe; and the manual way (the proxy binds BRISK_SOCKET) still serves
    /init and /run. `src` is an action returning {"echo": ...}."""
    p = start()
    try:
        check("%s: readiness probe POST /ready -> 200 {ok:true}" % kind, p.ready == (200, {"ok": True}), p.ready)
        st, body = p.init({"main": main, "code": src})
        st2, body2 = p.run(args)
        check("%s: socket-activated proxy (BRISK_LISTEN_FD=0) serves /init and /run" % kind, st == 200 and st2 == 200 and "echo" in body2, (st, body, st2, body2))
    finally:
        p.close()
    p = start(activate=False)
    try:
        st, body = p.init({"main": main, "code": src})
        st2, body2 = p.run(args)
        check("%s: proxy binding BRISK_SOCKET itself serves /ready, /init and /run" % kind, p.ready[0] == 200 and st == 200 and st2 == 200 and "echo" in body2, (p.ready, st, body, st2, body2))
    finally:
        p.close()


def common_checks(kind, start, code):
    """Checks shared by the Node and Python runtimes. `code` maps a case name
    to (source, main name)."""

    activation_checks(kind, start, code["echo"][0], code["echo"][1], {"echo": 1})

    # /init with {} and with empty code; run before init.
    p = start()
    try:
        st, body = p.post("/run", {"value": {}, "activation_id": new_id()})
        check("%s: run before init -> 403 System not initialized." % kind, st == 403 and body == {"error": "System not initialized."}, (st, body))
        st, body = p.post("/init", {})
        check("%s: init {} -> 403 Missing main/no code to execute." % kind, st == 403 and body == {"error": "Missing main/no code to execute."}, (st, body))
        st, body = p.init({"main": "main", "code": ""})
        check("%s: init with empty code -> not 200" % kind, st != 200, (st, body))
    finally:
        p.close()

    # Echo, second init, shapes, unicode, env, __OW_* vars, 1 MiB.
    p = start()
    try:
        init_id = new_id()
        src, main = code["echo"]
        st, body = p.init({"name": "echo", "main": main, "code": src, "binary": False, "env": {"INIT_A": "a ❄", "INIT_EMPTY": ""}}, init_id)
        check("%s: init echo -> 200 {ok:true}" % kind, st == 200 and body == {"ok": True}, (st, body))
        st, body = p.init({"main": main, "code": src})
        check("%s: second init -> 403 exact message" % kind, st == 403 and body == {"error": "Cannot initialize the action more than once."}, (st, body))
        # The init printed on behalf of its activation: that activation's (silent) run still
        # ends with sentinels, so the init output is collected with it.
        p.run({"echo": {}}, init_id)
        check("%s: the run of the activation whose init printed ends with sentinels" % kind, p.last_logs_header != "none" and p.logs(init_id, "stdout")[1] and p.logs(init_id, "stderr")[1], p.last_logs_header)
        shapes = [{}, {"a": 1}, {"nested": {"deep": {"list": [1, 2, {"x": None}]}, "t": True}}, {"arr": [[], [1], ["a", 2.5]]}, {"u": SNOWMEN, "k" + SNOWMEN: "v"}, {"s": "quotes \" and \\ and \n newline"}]
        ok = True
        for shape in shapes:
            st, body = p.run({"echo": shape})
            if not (st == 200 and body == {"echo": shape}):
                ok = False
                print("     shape", shape, "->", st, body)
        check("%s: echo of several shapes round-trips exactly (incl. unicode)" % kind, ok)
        st, body = p.run([1, "two", {"three": 3}])
        check("%s: array input and array result" % kind, st == 200 and body == [1, "two", {"three": 3}], (st, body))
        big = "x" * (1 << 20)
        st, body = p.run({"echo": {"big": big}})
        check("%s: 1 MiB string argument echoed intact" % kind, st == 200 and body == {"echo": {"big": big}}, (st, str(body)[:200]))
        aid = new_id()
        st, body = p.run({"env": True}, aid, api_key="uuid:key")
        env = body.get("env", {}) if isinstance(body, dict) else {}
        check("%s: init env values become env vars (empty string kept)" % kind, env.get("INIT_A") == "a ❄" and env.get("INIT_EMPTY") == "", env)
        want = {
            "__OW_API_HOST": "https://brisk.test",
            "__OW_API_KEY": "uuid:key",
            "__OW_NAMESPACE": "guest",
            "__OW_ACTION_NAME": "/guest/test",
            "__OW_ACTION_VERSION": "0.0.1",
            "__OW_ACTIVATION_ID": aid,
            "__OW_TRANSACTION_ID": "tid-1",
        }
        check("%s: __OW_* vars visible during run" % kind, all(env.get(k) == v for k, v in want.items()) and env.get("__OW_DEADLINE", "").isdigit(), {k: env.get(k) for k in list(want) + ["__OW_DEADLINE"]})
        # Logs: order, streams, tagging, unicode, partial line, sentinels before response.
        aid = new_id()
        st, body = p.run({"log": True}, aid)
        out, out_s = p.logs(aid, "stdout")
        err, err_s = p.logs(aid, "stderr")
        check("%s: log run -> 200" % kind, st == 200, (st, body))
        check("%s: stdout lines tagged, in order, unicode intact, partial line flushed" % kind, out == ["out 1", "out 2 " + SNOWMEN, "multi a", "multi b", "partial"], out)
        check("%s: stderr lines tagged, in order" % kind, err == ["err 1", "err 2 " + SNOWMEN], err)
        check("%s: both sentinels tagged and received before the response" % kind, out_s and err_s)
        # More log output than a pipe holds: all of it, then the sentinels, before the response.
        aid = new_id()
        st, body = p.run({"bigLog": True}, aid)
        out, out_s = p.logs(aid, "stdout")
        check("%s: 1.2 MB of log lines all tagged, in order, sentinels before the response" % kind, st == 200 and out == ["line %d %s" % (i, "z" * 50) for i in range(20000)] and out_s and p.logs(aid, "stderr")[1], (st, len(out), out_s))
        # A run that printed nothing either ends with both sentinels, or says "X-Brisk-Logs:
        # none" and writes no sentinel at all; a run that printed says "sentinels".
        aid = new_id()
        p.run({}, aid)
        quiet = p.last_logs_header == "none"
        sentinels = (p.logs(aid, "stdout")[1], p.logs(aid, "stderr")[1])
        check("%s: a silent run has both sentinels or none (and says none)" % kind, sentinels == (not quiet, not quiet), (p.last_logs_header, sentinels))
        p.run({"log": True}, new_id())
        check("%s: a run that printed is not announced as silent" % kind, p.last_logs_header != "none", p.last_logs_header)
        # Init output is tagged with the activation that caused the init.
        init_out, _ = p.logs(init_id, "stdout")
        check("%s: top-level init output tagged with the init's activation id" % kind, init_out == ["loading " + SNOWMEN], init_out)
        # Non-dictionary results.
        for what in ("string", "number", "null"):
            st, body = p.run({"return": what})
            check("%s: %s result -> 502 '%s'" % (kind, what, NOT_DICT), st == 502 and body == {"error": NOT_DICT}, (st, body))
        st, body = p.run({"return": "error"})
        check("%s: {error: ...} result -> 200 with the object" % kind, st == 200 and body == {"error": "app failure"}, (st, body))
        # Keep-alive survived all of this on one connection.
        check("%s: all of the above on one keep-alive connection" % kind, p.conn.sock is not None)
    finally:
        p.close()

    # Non-default entry point.
    p = start()
    try:
        src, main = code["other_main"]
        st, body = p.init({"main": main, "code": src})
        st2, body2 = p.run({"n": 2})
        check("%s: non-default entry point '%s'" % (kind, main), st == 200 and st2 == 200 and body2 == {"niam": 2}, (st, body, st2, body2))
    finally:
        p.close()

    # Entry point missing.
    p = start()
    try:
        src, _ = code["other_main"]
        aid = new_id()
        st, body = p.init({"main": "main", "code": src}, aid)
        msg = body.get("error", "") if isinstance(body, dict) else ""
        check("%s: missing entry function -> 502 naming it" % kind, st == 502 and "main" in msg and "Initialization has failed" in msg, (st, body))
        check("%s: failed init writes tagged sentinels" % kind, p.logs(aid, "stdout")[1] and p.logs(aid, "stderr")[1])
    finally:
        p.close()

    # Syntax error.
    p = start()
    try:
        src, main = code["syntax_error"]
        aid = new_id()
        st, body = p.init({"main": main, "code": src}, aid)
        msg = body.get("error", "") if isinstance(body, dict) else ""
        err, _ = p.logs(aid, "stderr")
        check("%s: syntax error -> 502 with the error text" % kind, st == 502 and "SyntaxError" in msg, (st, body))
        check("%s: syntax error is logged to stderr (tagged)" % kind, any("SyntaxError" in line for line in err), err)
    finally:
        p.close()

    # Process dies during /run and during /init.
    p = start()
    try:
        src, main = code["die"]
        p.init({"main": main, "code": src})
        closed = expect_closed(lambda: p.run({}))
        check("%s: process dying during /run -> connection closed" % kind, closed)
    finally:
        p.close()
    p = start()
    try:
        src, main = code["die_at_init"]
        closed = expect_closed(lambda: p.init({"main": main, "code": src}))
        check("%s: process dying during /init -> connection closed" % kind, closed)
    finally:
        p.close()


def bench(kind, start, src, main, n):
    p = start()
    try:
        p.init({"main": main, "code": src})
        for _ in range(1000):
            p.run({})
        times = []
        conn = p.conn
        # The log pump thread would compete for the GIL on every sentinel;
        # pause it and drain the pipes between requests instead.
        p.paused = True
        for i in range(n):
            if i % 100 == 0:
                p.drain()
            body = {"value": {}, "activation_id": new_id(), "namespace": "guest", "action_name": "/guest/noop", "deadline": "0"}
            data = json.dumps(body).encode()
            t0 = time.perf_counter()
            conn.request("POST", "/run", body=data, headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            times.append(time.perf_counter() - t0)
            if r.status != 200:
                raise RuntimeError("bench run failed: %s" % r.status)
        times.sort()
        p50 = times[len(times) // 2] * 1e6
        p99 = times[int(len(times) * 0.99)] * 1e6
        print("  bench %s: warm noop /run over keep-alive Unix socket, n=%d: p50 %.0f us, p99 %.0f us" % (kind, n, p50, p99))
        return p50
    finally:
        p.close()


# ---------------------------------------------------------------------------
# Node.js
# ---------------------------------------------------------------------------

NODE_ECHO = """
console.log('loading ❄ ☃ ❄');
function main(args) {
  if (Array.isArray(args)) return args;
  if (args.echo !== undefined) return {echo: args.echo};
  if (args.env) return {env: process.env};
  if (args.bigLog) {
    for (let i = 0; i < 20000; i++) console.log('line ' + i + ' ' + 'z'.repeat(50));
    return {n: 20000};
  }
  if (args.log) {
    console.log('out 1');
    console.error('err 1');
    process.stdout.write('out 2 ❄ ☃ ❄\\nmulti a\\nmulti b\\n');
    process.stderr.write(Buffer.from('err 2 ❄ ☃ ❄\\n'));
    process.stdout.write('partial');
    return {};
  }
  if (args.return === 'string') return 'a string';
  if (args.return === 'number') return 42;
  if (args.return === 'null') return null;
  if (args.return === 'error') return {error: 'app failure'};
  return {};
}
"""

NODE_CODE = {
    "echo": (NODE_ECHO, "main"),
    "other_main": ("function niam(args) { return {niam: args.n}; }", "niam"),
    "syntax_error": ("function main(args) { return {;", "main"),
    "die": ("function main() { process.exit(1); }", "main"),
    "die_at_init": ("process.exit(3);\nfunction main() { return {}; }", "main"),
}


def node_start(env=None):
    return lambda activate=True: Proxy([NODE, os.path.join(HERE, "node", "proxy.js")], env, activate)


def node_checks(n_bench):
    print("== node")
    start = node_start()
    common_checks("node", start, NODE_CODE)
    framing_checks("node", start)

    def one(src, args=None, main="main", init_extra=None):
        p = start()
        try:
            value = {"main": main, "code": src}
            value.update(init_extra or {})
            st, body = p.init(value)
            if st != 200:
                return ("init", st, body)
            return p.run(args or {})
        finally:
            p.close()

    check("node: exports.main", one("exports.main = a => ({v: 1});") == (200, {"v": 1}))
    r = one("function main() { return new Promise((resolve) => { let d = ''; process.stdin.setEncoding('utf8'); process.stdin.on('data', (c) => { d += c; }); process.stdin.on('end', () => resolve({stdin: d})); process.stdin.on('error', (e) => resolve({stdinError: String(e.code)})); }); }")
    check("node: the action's process.stdin is empty, not the listening socket", r == (200, {"stdin": ""}), r)
    check("node: module.exports.main", one("module.exports.main = function (a) { return {v: 2}; };") == (200, {"v": 2}))
    check("node: module.exports = {main}", one("function m() { return {v: 3}; }\nmodule.exports = {main: m};") == (200, {"v": 3}))
    check("node: resolved promise", one("function main() { return new Promise(r => setTimeout(() => r({v: 4}), 5)); }") == (200, {"v": 4}))
    check("node: async function", one("async function main(a) { await new Promise(r => setTimeout(r, 5)); return {v: a.x}; }", {"x": 5}) == (200, {"v": 5}))
    r = one("function main() { return Promise.reject(new Error('nope ❄')); }")
    check("node: rejected promise with Error -> 200 {error: message}", r == (200, {"error": "nope ❄"}), r)
    r = one("function main() { return Promise.reject({reason: 'r'}); }")
    check("node: rejected promise with object -> 200 {error: object}", r == (200, {"error": {"reason": "r"}}), r)
    r = one("async function main() { throw new Error('async boom'); }")
    check("node: async function throwing -> 200 {error: message}", r == (200, {"error": "async boom"}), r)
    r = one("function main() { throw new Error('boom'); }")
    check("node: thrown exception -> 502 An error has occurred: Error: boom", r == (502, {"error": "An error has occurred: Error: boom"}), r)
    r = one("function main() { return Promise.resolve('str'); }")
    check("node: promise resolving to a string -> 502 not a dictionary", r == (502, {"error": NOT_DICT}), r)
    r = one("function main() { return; }")
    check("node: undefined result -> {} (OpenWhisk behaviour)", r == (200, {}), r)
    r = one("const path = require('path'); const fs = require('fs');\nfunction main() { return {sep: path.sep, fs: typeof fs.readFileSync}; }")
    check("node: require of built-in modules in plain code", r == (200, {"sep": "/", "fs": "function"}), r)
    r = one("function main() { return {snow: '❄ ☃ ❄'}; }")
    check("node: unicode in code and result", r == (200, {"snow": SNOWMEN}), r)

    # Zip actions (the invoker unpacks them; we pass codeDir).
    def zip_case(files, args=None, main="main", raw_code=None):
        p = start()
        try:
            if raw_code is not None:
                st, body = p.init({"main": main, "code": raw_code, "binary": True})
            else:
                st, body = p.init({"main": main, "codeDir": unpack(make_zip(files)), "binary": True})
            if st != 200:
                return ("init", st, body)
            return p.run(args or {})
        finally:
            p.close()

    r = zip_case({"index.js": "exports.main = () => ({from: 'index', cwd: process.cwd()});"})
    check("node: zip without package.json uses index.js; cwd is the unzipped folder", r[0] == 200 and r[1]["from"] == "index" and r[1]["cwd"].startswith(tempfile.gettempdir()) and "brisk-selftest-code-" in r[1]["cwd"], r)
    r = zip_case({
        "package.json": json.dumps({"name": "x", "main": "lib/nested/app.js"}),
        "lib/nested/app.js": "const pad = require('leftpad'); const h = require('../helper');\nexports.main = (a) => ({v: pad(h.word(), 6), file: require('fs').readFileSync('data.txt', 'utf8')});",
        "lib/helper.js": "exports.word = () => 'hi';",
        "node_modules/leftpad/index.js": "module.exports = (s, n) => ' '.repeat(n - s.length) + s;",
        "node_modules/leftpad/package.json": json.dumps({"name": "leftpad", "main": "index.js"}),
        "data.txt": "relative ❄",
    })
    check("node: zip with package.json main (nested file), bundled node_modules, relative read", r == (200, {"v": "    hi", "file": "relative ❄"}), r)
    r = zip_case({"other.js": "exports.main = () => ({});"})
    check("node: zip without package.json or index.js -> 502 clear message", r[0] == "init" and r[1] == 502 and "index.js" in r[2]["error"], r)
    r = zip_case({"package.json": "{not json", "index.js": ""})
    check("node: zip with broken package.json -> 502", r[0] == "init" and r[1] == 502 and "package.json" in r[2]["error"], r)
    r = zip_case({"index.js": "exports.handler = () => ({h: 1});"}, main="handler")
    check("node: zip with non-default entry point", r == (200, {"h": 1}), r)
    r = zip_case({}, raw_code=base64.b64encode(b"this is not a zip").decode())
    check("node: invalid zip (binary code without codeDir) -> 502 clear message", r[0] == "init" and r[1] == 502 and "zip" in r[2]["error"], r)
    r = zip_case({}, raw_code=base64.b64encode(make_zip({"index.js": "exports.main = () => ({b64: true});"})).decode())
    check("node: base64 zip code without codeDir is unpacked by the proxy", r == (200, {"b64": True}), r)
    p = start()
    try:
        st, body = p.init({"main": "main", "codeDir": "/nonexistent/brisk/dir", "binary": True})
        check("node: codeDir that does not exist -> 502", st == 502 and "does not exist" in body["error"], (st, body))
    finally:
        p.close()

    # Concurrency.
    conc_src = """
function main(a) {
  console.log('start ' + a.i);
  process.stdout.write('half ' + a.i);
  return new Promise(resolve => setTimeout(() => {
    process.stdout.write(' done\\n');
    console.error('err ' + a.i);
    setTimeout(() => { console.log('end ' + a.i); resolve({i: a.i, id: process.env.__OW_ACTIVATION_ID ? true : false}); }, 10 + (a.i % 3) * 5);
  }, 20 - a.i));
}
"""
    p = Proxy([NODE, os.path.join(HERE, "node", "proxy.js")], {"__OW_ALLOW_CONCURRENT": "true"})
    try:
        p.init({"main": "main", "code": conc_src})
        ids = [new_id() for _ in range(10)]
        results = {}

        def worker(i):
            c = UnixHTTPConnection(p.sock)
            results[i] = p.run({"i": i}, ids[i], conn=c)
            c.close()

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(10)]
        t0 = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.time() - t0
        check("node: 10 overlapping runs with __OW_ALLOW_CONCURRENT=true all succeed", all(results[i] == (200, {"i": i, "id": True}) for i in range(10)), results)
        check("node: overlapping runs really overlapped (%.0f ms total)" % (elapsed * 1000), elapsed < 0.29)
        ok = True
        for i in range(10):
            out, s1 = p.logs(ids[i], "stdout")
            err, s2 = p.logs(ids[i], "stderr")
            if out != ["start %d" % i, "half %d done" % i, "end %d" % i] or err != ["err %d" % i] or not (s1 and s2):
                ok = False
                print("     activation", i, out, err, s1, s2)
        check("node: each concurrent run's logs tagged with its own activation (partial lines per activation)", ok)
    finally:
        p.close()

    p = start()
    try:
        # Each run reports when it started and ended, and the deadline it was given.
        p.init({"main": "main", "code": "function main(a) { const s = Date.now(); return new Promise(r => setTimeout(() => r({ s, e: Date.now(), deadline: Number(process.env.__OW_DEADLINE) }), a.wait)); }"})
        deadline, (slow_st, first), (st, body) = run_during_another(p, {"wait": 300}, {"wait": 0})
        check("node: a run that arrives during another (no __OW_ALLOW_CONCURRENT) waits for it, then succeeds", st == 200 and slow_st == 200 and body.get("s", 0) >= first.get("e", 1), (first, st, body))
        # Its time limit counts from its start: the deadline moved by the ~200 ms it waited.
        check("node: a queued run's deadline moves by the time it waited", isinstance(body, dict) and 150 <= body.get("deadline", 0) - deadline <= 5000 and first.get("deadline") == deadline, (first, body))
    finally:
        p.close()

    # Routes.
    p = start()
    try:
        p.conn.request("GET", "/run")
        r = p.conn.getresponse()
        body = r.read()
        check("node: GET /run and unknown routes -> 404 JSON", r.status == 404 and "error" in json.loads(body))
        st, body = p.post("/nope", {})
        check("node: POST /nope -> 404", st == 404)
    finally:
        p.close()

    return bench("node", start, "function main() { return {}; }", "main", n_bench)


# ---------------------------------------------------------------------------
# Python
# ---------------------------------------------------------------------------

PY_ECHO = """
import os, sys
print('loading ❄ ☃ ❄')
def main(args):
    if isinstance(args, list):
        return args
    if 'echo' in args:
        return {'echo': args['echo']}
    if args.get('env'):
        return {'env': dict(os.environ)}
    if args.get('bigLog'):
        for i in range(20000):
            print('line %d %s' % (i, 'z' * 50))
        return {'n': 20000}
    if args.get('log'):
        print('out 1')
        print('err 1', file=sys.stderr)
        sys.stdout.write('out 2 ❄ ☃ ❄\\nmulti a\\nmulti b\\n')
        sys.stderr.write('err 2 ❄ ☃ ❄\\n')
        sys.stdout.write('partial')
        return {}
    r = args.get('return')
    if r == 'string': return 'a string'
    if r == 'number': return 42
    if r == 'null': return None
    if r == 'error': return {'error': 'app failure'}
    return {}
"""

PY_CODE = {
    "echo": (PY_ECHO, "main"),
    "other_main": ("def niam(args):\n    return {'niam': args['n']}\n", "niam"),
    "syntax_error": ("def main(args)\n    return {}\n", "main"),
    "die": ("import os\ndef main(args):\n    os._exit(1)\n", "main"),
    "die_at_init": ("import os\nos._exit(3)\ndef main(args):\n    return {}\n", "main"),
}


MANIFEST = os.path.join(HERE, "..", "..", "model", "runtimes.json")
COMPILED = []


def python_argv():
    """The command line the invoker uses: the runtime manifest's interpreter arguments and the
    proxy byte-compiled by the interpreter (crates/invoker/src/runtime.rs)."""
    with open(MANIFEST, encoding="utf-8") as f:
        args = json.load(f)["runtimes"]["python"][0].get("args", [])
    if not COMPILED:
        d = tempfile.mkdtemp(prefix="brisk-selftest-pyc-")
        UNPACKED.append(d)
        out = os.path.join(d, "proxy.pyc")
        code = "import py_compile, sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True)"
        subprocess.run([PYTHON, "-I", "-S", "-c", code, os.path.join(HERE, "python", "proxy.py"), out], check=True)
        COMPILED.append(out)
    return [PYTHON] + args + [COMPILED[0]]


def python_start():
    argv = python_argv()
    return lambda activate=True: Proxy(argv, None, activate)


def python_checks(n_bench):
    print("== python")
    start = python_start()
    common_checks("python", start, PY_CODE)
    framing_checks("python", start)

    def one(src, args=None, main="main", value=None):
        p = start()
        try:
            v = value or {"main": main, "code": src}
            st, body = p.init(v)
            if st != 200:
                return ("init", st, body, p.lines["stderr"][:])
            aid = new_id()
            st, body = p.run(args if args is not None else {}, aid)
            return st, body, p.logs(aid, "stderr")[0]
        finally:
            p.close()

    r = one("import subprocess, sys\ndef main(args):\n    c = subprocess.run(['cat'], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)\n    return {'stdin': sys.stdin.read(), 'child': c.stdout.decode(), 'code': c.returncode}\n")
    check("python: the action's stdin and its children's are /dev/null, not the listening socket", r[:2] == (200, {"stdin": "", "child": "", "code": 0}), r)
    # A run queued behind another carries when the invoker sent it (X-Brisk-Sent); Python's
    # proxy reads it only when it starts it, and moves its deadline by the time it waited.
    p = start()
    try:
        p.init({"main": "main", "code": "import os\ndef main(args):\n    return {'deadline': int(os.environ['__OW_DEADLINE'])}\n"})
        sent = int(time.time() * 1000) - 500
        st, body = p.run({}, headers={"X-Brisk-Sent": str(sent)}, deadline=str(sent + 60000))
        moved = body.get("deadline", 0) - (sent + 60000) if isinstance(body, dict) else None
        st2, plain = p.run({}, deadline=str(sent + 60000))
        check("python: a queued run's deadline moves by the time since it was sent", st == 200 and moved is not None and 500 <= moved <= 5000 and (st2, plain) == (200, {"deadline": sent + 60000}), (st, body, st2, plain))
    finally:
        p.close()

    r = one("def main(args):\n    raise ValueError('bad ❄')\n")
    check("python: exception -> 200 {error: str(e)}", r[:2] == (200, {"error": "bad ❄"}), r)
    check("python: exception traceback logged to stderr (tagged)", any("Traceback" in l for l in r[2]) and any("ValueError: bad ❄" in l for l in r[2]), r[2])
    r = one("def main(args):\n    return [1, {'a': args}]\n", ["x", 2])
    check("python: array input and array result", r[:2] == (200, [1, {"a": ["x", 2]}]), r)
    r = one("import datetime\ndef main(args):\n    return {'t': datetime.datetime.now()}\n")
    check("python: unserializable result -> 502", r[0] == 502, r)
    r = one("from dataclasses import dataclass\n@dataclass\nclass P:\n    x: int\ndef main(args):\n    return {'x': P(3).x}\n")
    check("python: dataclasses in plain code (module registered)", r[:2] == (200, {"x": 3}), r)
    r = one("if __name__ == '__main__':\n    raise SystemExit('should not run')\ndef main(args):\n    return {'name': __name__}\n")
    check("python: plain code's `if __name__ == '__main__'` block does not run at init", r[:2] == (200, {"name": "main__"}), r)
    r = one("async def main(args):\n    return {'async': True}\n")
    check("python: async def main", r[:2] == (200, {"async": True}), r)
    r = one("def main(args):\n    print('x' * 10, end='')\n    return {'ok': 1}\n")
    check("python: print without newline", r[:2] == (200, {"ok": 1}), r)

    def zip_case(files, args=None, main="main"):
        d = unpack(make_zip(files))
        return one(None, args, main, {"main": main, "codeDir": d, "binary": True})

    r = zip_case({
        "__main__.py": "import helper, os\ndef main(args):\n    return {'v': helper.f(), 'data': open('data.txt', encoding='utf-8').read(), 'cwd': os.getcwd()}\n",
        "helper.py": "def f():\n    return 'helped'\n",
        "data.txt": "relative ❄",
    })
    check("python: zip with __main__.py, sibling module import, relative file read, cwd", r[0] == 200 and r[1]["v"] == "helped" and r[1]["data"] == "relative ❄" and "brisk-selftest-code-" in r[1]["cwd"], r)
    r = zip_case({"__main__.py": "def handler(args):\n    return {'h': args.get('x')}\n"}, {"x": 7}, main="handler")
    check("python: zip with non-default entry point", r[:2] == (200, {"h": 7}), r)
    r = zip_case({"main.py": "def main(args):\n    return {}\n"})
    check("python: zip without __main__.py -> 502 naming __main__.py", r[0] == "init" and r[1] == 502 and "__main__.py" in r[2]["error"], r)
    r = zip_case({"__main__.py": "def main(args)\n    return {}\n"})
    check("python: zip with a compile error -> 502, SyntaxError logged", r[0] == "init" and r[1] == 502 and "SyntaxError" in r[2]["error"] and any("SyntaxError" in l for l in r[3]), r)
    r = zip_case({
        "__main__.py": "import fakepkg\ndef main(args):\n    return {'pkg': fakepkg.VALUE, 'path': fakepkg.__file__}\n",
        "virtualenv/bin/activate_this.py": "",
        "virtualenv/lib/python3.11/site-packages/fakepkg/__init__.py": "VALUE = 'from venv ❄'\n",
    })
    check("python: zipped virtualenv/ site-packages put on sys.path", r[:1] == (200,) and r[1]["pkg"] == "from venv ❄" and "virtualenv" in r[1]["path"], r)
    r = one(None, {}, "main", {"main": "main", "code": base64.b64encode(make_zip({"__main__.py": "def main(a):\n    return {'b64': True}\n"})).decode(), "binary": True})
    check("python: base64 zip code without codeDir is unpacked by the proxy", r[:2] == (200, {"b64": True}), r)
    r = one(None, {}, "main", {"main": "main", "code": base64.b64encode(b"not a zip").decode(), "binary": True})
    check("python: invalid zip -> 502 clear message", r[0] == "init" and r[1] == 502 and "zip" in r[2]["error"], r)

    # Started with -S, the proxy loads `site` before any action code: the same sys.path as a
    # normal start of the interpreter (site-packages, and whatever .pth files add).
    normal = subprocess.run([PYTHON, "-I", "-c", "import json, sys; print(json.dumps(sys.path))"], capture_output=True, text=True, check=True)
    normal = json.loads(normal.stdout)
    r = one("import sys\ndef main(args):\n    return {'path': sys.path}\n")
    path = r[1].get("path", []) if r[0] == 200 else []
    path = [d for d in path if d not in ("", os.path.dirname(python_argv()[-1]))]
    check("python: sys.path of the action is that of a normal start (site-packages, .pth)", path == normal, (path, normal))
    r = one("import builtins\ndef main(args):\n    return {'help': hasattr(builtins, 'help'), 'exit': hasattr(builtins, 'exit')}\n")
    check("python: the builtins site adds (help, exit) exist for the action", r[:2] == (200, {"help": True, "exit": True}), r)
    # The action runs on the interpreter's main thread, as in a script.
    r = one("import signal, threading\ndef main(args):\n    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n    return {'main': threading.current_thread() is threading.main_thread()}\n")
    check("python: the action runs on the main thread (signal handlers, threading.main_thread())", r[:2] == (200, {"main": True}), r)
    r = one("import asyncio, threading\nasync def main(args):\n    await asyncio.sleep(0)\n    return {'main': threading.current_thread() is threading.main_thread()}\n")
    check("python: async main runs under asyncio.run on the main thread", r[:2] == (200, {"main": True}), r)
    # Results are encoded as json.dumps(result, ensure_ascii=False) would.
    r = one("def main(args):\n    return {'s': {1, 2}}\n")
    check("python: set in the result -> 502 with json's message", r[:2] == (502, {"error": "The action did not return a valid JSON result: Object of type set is not JSON serializable"}), r)
    r = one("def main(args):\n    d = {}\n    d['d'] = d\n    return d\n")
    check("python: circular result -> 502 with json's message", r[:2] == (502, {"error": "The action did not return a valid JSON result: Circular reference detected"}), r)
    r = one("def main(args):\n    return {'nan': float('nan'), 'inf': float('-inf'), 'big': 2 ** 70, 'u': '\u00e9\\U0001F600', 'f': 1.5e300}\n")
    check("python: NaN, infinities, big ints and non-ASCII in the result", r[0] == 200 and r[1]["big"] == 2 ** 70 and r[1]["u"] == "\u00e9\U0001F600" and r[1]["f"] == 1.5e300 and r[1]["inf"] == float("-inf") and r[1]["nan"] != r[1]["nan"], r)
    # Request bodies are parsed as json.loads parses them.
    p = start()
    try:
        p.init({"main": "main", "code": PY_ECHO})

        def raw(body):
            p.conn.request("POST", "/run", body=body, headers={"Content-Type": "application/json"})
            resp = p.conn.getresponse()
            data = resp.read()
            p.drain()
            return resp.status, json.loads(data)

        text = '  {"value": {"echo": {"big": 123456789012345678901234567890, "esc": "\\u00e9\\ud83d\\ude00 \\"q\\"", "f": -0.5e-3, "c": [NaN, Infinity]}}, "activation_id": "%s"}\n' % new_id()
        st, body = raw(text.encode("utf-8"))
        want = json.loads(text)["value"]
        check("python: body with big ints, escapes and constants parsed as json.loads does", st == 200 and json.dumps(body, sort_keys=True) == json.dumps(want, sort_keys=True), (st, body))
        st, body = raw(json.dumps({"value": {"echo": "utf-16 ❄"}, "activation_id": new_id()}).encode("utf-16"))
        check("python: UTF-16 body (detected as json.loads does)", (st, body) == (200, {"echo": "utf-16 ❄"}), (st, body))
        for bad in (b"{nope", b'{"value": {}} x', b"", b"[1, 2", b"[" * 100000):
            try:
                json.loads(bad)
                want = None
            except (ValueError, RecursionError) as e:
                want = "The request body is not valid JSON: %s" % e
            st, body = raw(bad)
            if bad == b"":
                check("python: empty /run body -> 200 with an empty argument", st == 200, (st, body))
            else:
                check("python: invalid body %r -> 400 with json's message" % bad[:20], (st, body) == (400, {"error": want}), (st, body))
    finally:
        p.close()

    # A run that writes nothing skips the sentinels and says so.
    p = start()
    try:
        p.init({"main": "main", "code": "def main(args):\n    if args.get('say'):\n        print('said')\n    return {}\n"})
        aid = new_id()
        p.run({}, aid)
        quiet = (p.last_logs_header, p.logs(aid, "stdout")[1], p.logs(aid, "stderr")[1])
        aid = new_id()
        p.run({"say": True}, aid)
        loud = (p.last_logs_header, p.logs(aid, "stdout"), p.logs(aid, "stderr")[1])
        check("python: a silent run answers X-Brisk-Logs: none without sentinels", quiet == ("none", False, False), quiet)
        check("python: a run that printed answers X-Brisk-Logs: sentinels with both sentinels", loud == ("sentinels", (["said"], True), True), loud)
    finally:
        p.close()

    # An exception that is not an Exception ends the request's connection, not the proxy.
    p = start()
    try:
        p.init({"main": "main", "code": "def main(args):\n    if args.get('interrupt'):\n        raise KeyboardInterrupt()\n    return {'alive': True}\n"})
        closed = expect_closed(lambda: p.run({"interrupt": True}))
        p.conn.close()
        p.conn = UnixHTTPConnection(p.sock)
        st, body = p.run({})
        check("python: KeyboardInterrupt from the action closes the connection; the proxy serves on", closed and (st, body) == (200, {"alive": True}), (closed, st, body))
    finally:
        p.close()

    # Runs are serialized: overlapping requests wait their turn.
    p = start()
    try:
        p.init({"main": "main", "code": "import time\nactive = [0]\nmax_active = [0]\ndef main(a):\n    active[0] += 1\n    max_active[0] = max(max_active[0], active[0])\n    time.sleep(0.05)\n    active[0] -= 1\n    return {'max': max_active[0]}\n"})
        res = {}

        def worker(i):
            c = UnixHTTPConnection(p.sock)
            res[i] = p.run({}, conn=c)
            c.close()

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        t0 = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.time() - t0
        check("python: overlapping runs are serialized and all succeed", all(res[i] == (200, {"max": 1}) for i in range(4)) and elapsed >= 0.19, (res, elapsed))
    finally:
        p.close()

    return bench("python", start, "def main(args):\n    return {}\n", "main", n_bench)


# ---------------------------------------------------------------------------
# Native
# ---------------------------------------------------------------------------


def native_checks():
    print("== native")
    start = lambda activate=True: Proxy([PYTHON, os.path.join(HERE, "native", "proxy.py")], None, activate)
    activation_checks("native", start, "#!/bin/sh\necho '{\"echo\": \"native\"}'\n", "main", {})

    p = start()
    try:
        st, body = p.post("/run", {"value": {}})
        check("native: run before init -> 403 System not initialized.", (st, body) == (403, {"error": "System not initialized."}), (st, body))
        st, body = p.post("/init", {})
        check("native: init {} -> 403 Missing main/no code to execute.", (st, body) == (403, {"error": "Missing main/no code to execute."}), (st, body))
    finally:
        p.close()

    script = r"""
echo "log line 1"
echo "err line ❄" >&2
read -r LINE
echo "stdin: $LINE"
echo "cwd: $(pwd)"
echo ""
echo "{\"argv\": $1, \"ns\": \"$__OW_NAMESPACE\", \"aid\": \"$__OW_ACTIVATION_ID\", \"host\": \"$__OW_API_HOST\", \"init\": \"$INIT_X\"}"
"""
    p = start()
    try:
        st, body = p.init({"main": "main", "code": script, "env": {"INIT_X": "ix"}})
        check("native: init shell script without #! -> 200", st == 200 and body == {"ok": True}, (st, body))
        st, body = p.init({"main": "main", "code": script})
        check("native: second init -> 403 exact message", (st, body) == (403, {"error": "Cannot initialize the action more than once."}))
        aid = new_id()
        arg = {"a": 1, "u": SNOWMEN}
        st, body = p.run(arg, aid)
        out, s1 = p.logs(aid, "stdout")
        err, s2 = p.logs(aid, "stderr")
        check("native: argv[1] is the JSON value; __OW_* and init env visible", st == 200 and body == {"argv": arg, "ns": "guest", "aid": aid, "host": "https://brisk.test", "init": "ix"}, (st, body))
        stdin_line = out[1] if len(out) > 1 else ""
        check("native: stdin carries the same JSON line", stdin_line.startswith("stdin: ") and json.loads(stdin_line[len("stdin: "):]) == arg, out)
        check("native: stdout lines except the result are tagged logs; stderr tagged", out[:1] == ["log line 1"] and out[3:] == [""] and out[2].startswith("cwd: /") and err == ["err line ❄"], (out, err))
        check("native: sentinels on both streams before the response", s1 and s2)
        big = "y" * (1 << 20)
        p2 = start()
        try:
            p2.init({"main": "main", "code": "#!/usr/bin/python3\nimport sys, json\nv = json.loads(sys.stdin.readline())\nprint(json.dumps({'n': len(v['big']), 'argc': len(sys.argv)}))\n"})
            st, body = p2.run({"big": big})
            check("native: 1 MiB argument over stdin (argv[1] omitted beyond the kernel limit)", (st, body) == (200, {"n": 1 << 20, "argc": 1}), (st, body))
        finally:
            p2.close()
    finally:
        p.close()

    # A run that arrives during another waits for it, and its deadline moves by that wait.
    p = start()
    try:
        p.init({"main": "main", "code": "#!/bin/sh\nsleep 0.3\necho \"{\\\"deadline\\\": $__OW_DEADLINE}\"\n"})
        deadline, (_, first), (st, body) = run_during_another(p, {}, {})
        check("native: a queued run's deadline moves by the time it waited", st == 200 and isinstance(body, dict) and 150 <= body.get("deadline", 0) - deadline <= 5000 and first.get("deadline") == deadline, (first, st, body))
    finally:
        p.close()

    def one(code=None, files=None, args=None, modes=None):
        p = start()
        try:
            if files is not None:
                d = unpack(make_zip(files, modes))
                st, body = p.init({"main": "main", "codeDir": d, "binary": True})
            else:
                st, body = p.init({"main": "main", "code": code})
            if st != 200:
                return ("init", st, body)
            aid = new_id()
            st, body = p.run(args or {}, aid)
            return st, body, p.logs(aid, "stdout")[0], p.logs(aid, "stderr")[0]
        finally:
            p.close()

    r = one(files={"exec": "#!/bin/sh\necho working\necho '{\"zipped\": true}'\n", "other.txt": "x"})
    check("native: zipped exec (mode lost) gets chmod +x and runs", r[:3] == (200, {"zipped": True}, ["working"]), r)
    r = one(files={"run.sh": "echo hi"})
    check("native: zip without exec -> 502 clear message", r[0] == "init" and r[1] == 502 and "exec" in r[2]["error"], r)
    r = one("#!/bin/sh\necho 'not json'\n")
    check("native: last line not JSON -> 502 not a dictionary; line logged", r[:2] == (502, {"error": NOT_DICT}) and r[2] == ["not json"], r)
    r = one("#!/bin/sh\necho '\"a string\"'\n")
    check("native: JSON string result -> 502 not a dictionary", r[:2] == (502, {"error": NOT_DICT}), r)
    r = one("#!/bin/sh\necho 'oops' >&2\nexit 3\n")
    check("native: non-zero exit without result -> 502 exited unexpectedly, stderr kept", r[:2] == (502, {"error": "The action did not produce a valid response and exited unexpectedly."}) and r[3] == ["oops"], r)
    r = one("#!/bin/sh\necho '[1, 2]'\nexit 1\n")
    check("native: non-zero exit with a valid (array) result -> 200", r[:2] == (200, [1, 2]), r)
    r = one("#!/bin/sh\necho 'log before'\necho '{\"via\": \"fd3\"}' >&3\necho 'log after'\n")
    check("native: actionloop-style result on fd 3; all stdout is logs", r[:3] == (200, {"via": "fd3"}, ["log before", "log after"]), r)
    r = one("#!/usr/bin/python3\nimport sys, json\nprint(json.dumps({'snow': json.loads(sys.argv[1])['s'] + ' ❄'}, ensure_ascii=False))\n", args={"s": SNOWMEN})
    check("native: unicode in argument and result (python script)", r[:2] == (200, {"snow": SNOWMEN + " ❄"}), r)
    r = one("#!/bin/sh\nprintf 'no newline at end'\n")
    check("native: output without trailing newline handled", r[:2] == (502, {"error": NOT_DICT}) and r[2] == ["no newline at end"], r)


def main():
    args = sys.argv[1:]
    n_bench = 2000
    if "--bench" in args:
        i = args.index("--bench")
        n_bench = int(args[i + 1])
        del args[i : i + 2]
    which = args or ["node", "python", "native"]
    latencies = {}
    if "node" in which:
        latencies["node"] = node_checks(n_bench)
    if "python" in which:
        latencies["python"] = python_checks(n_bench)
    if "native" in which:
        native_checks()
    print()
    for k, v in latencies.items():
        print("warm p50 %s: %.0f us" % (k, v))
    for d in UNPACKED:
        shutil.rmtree(d, ignore_errors=True)
    print("%d passed, %d failed" % (RESULTS["pass"], RESULTS["fail"]))
    for f in FAILURES:
        print("  failed: %s" % f)
    return 1 if RESULTS["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
