"""Brisk runtime proxy for Python actions (kind python:3.11).

Speaks the action container contract described in docs/runtime-protocol.md:
POST /init loads the user's code once, POST /run calls its entry point. It
serves the listening socket it is given as file descriptor BRISK_LISTEN_FD
(socket activation: the invoker's stdin; /dev/null takes the socket's place as
stdin), or for manual testing a Unix socket it binds at BRISK_SOCKET, or
127.0.0.1:BRISK_PORT with TCP_NODELAY.

Runs are serialized: one thread serves every connection and runs the action, so
the action runs on the interpreter's main thread (signals, asyncio and threading
behave as in a script). Every line written to sys.stdout/sys.stderr while a run
(or init) is active is tagged "\\x01<activation id>\\x02"; a run ends with the
tagged sentinel on both streams, written before the HTTP response; a run that
wrote nothing skips the sentinels and answers with "X-Brisk-Logs: none".

Start-up is on the cold-start path. The proxy is made to run as `python3 -I -S`
from its byte-compiled form (no `site` and no compiling before it serves), and
imports only built-in modules until it has its socket (not the json, socket or
threading packages: `json` alone imports `re`, which costs more than the rest of
the start). Then, before it serves the first request, it does what every action
needs: `os`, the JSON codec, `site` when started without it (site-packages and
.pth files, as a normal start) and the compiler's first-use set-up. A stem cell
does that while it waits in the pool; a cold start overlaps it with the
invoker's readiness probe, which waits in the socket's backlog.

Standard library only.
"""

import _socket
import _thread
import io
import posix
import select
import sys

os = None  # imported by _warm_up(), once the proxy has its socket

SENTINEL = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"
NOT_A_DICTIONARY = "The action did not return a dictionary or array."
MODULE_NAME = "main__"
ModuleType = type(sys)


async def _coroutine():
    pass


_probe = _coroutine()
CoroutineType = type(_probe)
_probe.close()
del _probe


# ---------------------------------------------------------------------------
# JSON through the C codec of the json package, without importing the package (it imports
# `re`, which costs more than the rest of the proxy's start). Anything the fast path does not
# accept goes to `json` itself, so results and error messages are the standard library's.
# ---------------------------------------------------------------------------


class _Decoding:
    """The settings `_json.make_scanner` reads: those of `json.loads` without arguments."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    _constants = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}
    parse_constant = _constants.__getitem__


_scan = None
_make_encoder = _encode_str = None


def _init_json():
    global _scan, _make_encoder, _encode_str
    try:
        from _json import encode_basestring as _encode_str
        from _json import make_encoder as _make_encoder
        from _json import make_scanner
    except ImportError:  # an interpreter without the C accelerator: the json package does it all
        return
    _scan = make_scanner(_Decoding())


def _loads(raw):
    """`json.loads(raw)`."""
    if _scan is not None:
        try:
            text = raw.decode("utf-8").strip(" \t\n\r")
            value, end = _scan(text, 0)
            if end == len(text):
                return value
        except (UnicodeDecodeError, ValueError, StopIteration):
            pass
    import json

    return json.loads(raw)


def _not_serializable(o):
    raise TypeError("Object of type %s is not JSON serializable" % o.__class__.__name__)


def _dumps(value):
    """`json.dumps(value, ensure_ascii=False)`."""
    if _scan is None:
        import json

        return json.dumps(value, ensure_ascii=False)
    # A new encoder per call: its circular-reference markers must start empty.
    encode = _make_encoder({}, _not_serializable, _encode_str, None, ": ", ", ", False, False, True)
    return "".join(encode(value, 0))


# ---------------------------------------------------------------------------
# Log tagging
# ---------------------------------------------------------------------------


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        try:
            n = posix.write(fd, view)
        except InterruptedError:
            continue
        except OSError:
            return  # the reader went away; logs are best effort
        view = view[n:]


class _BinaryView:
    """Stand-in for `sys.stdout.buffer`: decodes bytes and forwards them."""

    def __init__(self, owner):
        self._owner = owner

    def write(self, b):
        self._owner.write(bytes(b).decode("utf-8", errors="replace"))
        return len(b)

    def flush(self):
        pass

    def fileno(self):
        return self._owner.fileno()


class TaggingWriter(io.TextIOBase):
    """A text stream that line-buffers output and tags each line with the
    activation currently running (runs are serialized, so one id suffices)."""

    def __init__(self, fd, name, line_fd=None, line_sep=b"\x02"):
        super().__init__()
        self._fd = fd
        # Tagged lines may go to another fd (stderr lines go to stdout, marked with
        # "\x03", so the order of both streams survives); sentinels stay on `fd`.
        self._line_fd = fd if line_fd is None else line_fd
        self._line_sep = line_sep
        self._name = name
        self._lock = _thread.allocate_lock()
        self._partial = ""
        self.tag = b""
        self.active = False
        self.wrote = False  # anything written since begin()
        self.buffer = _BinaryView(self)

    @property
    def encoding(self):
        return "utf-8"

    @property
    def errors(self):
        return "strict"

    @property
    def name(self):
        return self._name

    def writable(self):
        return True

    def isatty(self):
        return False

    def fileno(self):
        return self._fd

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError("write() argument must be str, not %s" % type(s).__name__)
        with self._lock:
            if not self.active:
                if s:
                    _write_all(self._fd, s.encode("utf-8", errors="replace"))
                return len(s)
            if s:
                self.wrote = True
            text = self._partial + s
            nl = text.rfind("\n")
            if nl < 0:
                self._partial = text
                return len(s)
            self._partial = text[nl + 1 :]
            self._emit(text[:nl])
        return len(s)

    def _emit(self, body):
        data = body.encode("utf-8", errors="replace")
        if self.tag:
            tag = self.tag[:-1] + self._line_sep
            data = tag + data.replace(b"\n", b"\n" + tag)
            _write_all(self._line_fd, data + b"\n")
        else:
            _write_all(self._fd, data + b"\n")

    def flush(self):
        pass

    def begin(self, tag):
        with self._lock:
            self.tag = tag
            self.active = True
            self.wrote = False

    def flush_partial(self):
        """Emits the unterminated last line, if any."""
        with self._lock:
            if self._partial:
                self._emit(self._partial)
                self._partial = ""

    def end(self, sentinel):
        """Optionally writes the sentinel, and stops tagging."""
        with self._lock:
            if sentinel:
                _write_all(self._fd, self.tag + SENTINEL.encode() + b"\n")
            self.active = False
            self.tag = b""


OUT = TaggingWriter(1, "<stdout>")
ERR = TaggingWriter(2, "<stderr>", line_fd=1, line_sep=b"\x03")


def _begin_logs(activation_id):
    tag = ("\x01%s\x02" % activation_id).encode("utf-8") if activation_id else b""
    OUT.begin(tag)
    ERR.begin(tag)


def _end_logs(sentinel=True):
    # Every line before any sentinel: nothing tagged may follow one.
    OUT.flush_partial()
    ERR.flush_partial()
    OUT.end(sentinel)
    ERR.end(sentinel)


# ---------------------------------------------------------------------------
# Action state
# ---------------------------------------------------------------------------


class InitError(Exception):
    pass


class Action:
    def __init__(self):
        self.initialized = False
        self.main = None
        # The activation whose run must end with sentinels because /init printed on its behalf.
        self.init_logs_owed_to = None


ACTION = Action()


def _activate_virtualenv(code_dir):
    venv = os.path.join(code_dir, "virtualenv")
    if not os.path.isdir(venv):
        return
    import site

    before = list(sys.path)
    import glob

    for sp in sorted(glob.glob(os.path.join(venv, "lib", "python*", "site-packages"))):
        site.addsitedir(sp)
    added = [p for p in sys.path if p not in before]
    sys.path[:] = added + before


def _load_code_dir(code_dir, main_name):
    if not os.path.isdir(code_dir):
        raise InitError("the code directory %s does not exist" % code_dir)
    main_file = os.path.join(code_dir, "__main__.py")
    if not os.path.isfile(main_file):
        raise InitError("Zip file does not include mandatory files: __main__.py is missing.")
    code_dir = os.path.abspath(code_dir)
    sys.path.insert(0, code_dir)
    _activate_virtualenv(code_dir)
    os.chdir(code_dir)
    import importlib.util

    spec = importlib.util.spec_from_file_location(MODULE_NAME, main_file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE_NAME] = module
    spec.loader.exec_module(module)
    return module


def _load_plain(code, main_name):
    filename = os.path.join(os.getcwd(), "__main__.py")
    compiled = compile(code, filename, "exec")
    module = ModuleType(MODULE_NAME)
    module.__file__ = filename
    sys.modules[MODULE_NAME] = module
    exec(compiled, module.__dict__)
    return module


def _unzip(code_b64):
    # Imported here: zipfile and tempfile pull in compression and random modules that most
    # actions never need.
    import base64
    import tempfile
    import zipfile

    try:
        data = base64.b64decode(code_b64, validate=False)
        target = tempfile.mkdtemp(prefix="brisk-action-")
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            zf.extractall(target)
    except (ValueError, zipfile.BadZipFile, OSError) as e:
        raise InitError("the code is not a valid zip archive: %s" % e)
    return target


def do_init(msg):
    if ACTION.initialized:
        return 403, {"error": "Cannot initialize the action more than once."}
    value = msg.get("value") if isinstance(msg, dict) else None
    if not isinstance(value, dict):
        value = {}
    main_name = value.get("main")
    code = value.get("code")
    code_dir = value.get("codeDir")
    if not isinstance(main_name, str) or not main_name:
        main_name = None
    if not isinstance(code, str) or not code:
        code = None
    if not isinstance(code_dir, str) or not code_dir:
        code_dir = None
    if main_name is None or (code is None and code_dir is None):
        return 403, {"error": "Missing main/no code to execute."}

    env = value.get("env")
    if isinstance(env, dict):
        for k, v in env.items():
            if v is None:
                v = ""
            elif not isinstance(v, str):
                v = _dumps(v)
            os.environ[str(k)] = v
        activation_id = env.get("__OW_ACTIVATION_ID")
    else:
        activation_id = None
    _begin_logs(activation_id if isinstance(activation_id, str) else "")

    try:
        if code_dir is not None:
            module = _load_code_dir(code_dir, main_name)
        elif value.get("binary") is True:
            module = _load_code_dir(_unzip(code), main_name)
        else:
            module = _load_plain(code, main_name)
        fn = getattr(module, main_name, None)
        if not callable(fn):
            raise InitError("the action code does not define a function named '%s' (entry point not found)" % main_name)
    except InitError as e:
        reason = str(e)
    except SystemExit as e:
        _end_logs(False)
        os._exit(e.code if isinstance(e.code, int) else (0 if e.code is None else 1))
    except BaseException as e:
        import traceback

        traceback.print_exc()
        reason = "".join(traceback.format_exception_only(type(e), e)).strip()
    else:
        if (OUT.wrote or ERR.wrote) and OUT.tag:
            ACTION.init_logs_owed_to = activation_id
        _end_logs(False)
        ACTION.main = fn
        ACTION.initialized = True
        return 200, {"ok": True}

    print("Initialization has failed due to: %s" % reason, file=sys.stderr)
    _end_logs(True)
    return 502, {"error": "Initialization has failed due to: %s" % reason}


# Per-run values (activation id, deadline) are new on every run. `os.environ[k] = v` also calls
# putenv(), and glibc keeps every distinct value ever set for the life of the process, so writing
# those there would leak memory and slow each run down. They go only into `os.environ`'s own
# mapping (what `os.environ` and `os.getenv` read); the values that repeat (namespace, action
# name, API key) are also written to the C environment when they change, so child processes see
# them.
_PER_RUN_ENV = frozenset(("__OW_ACTIVATION_ID", "__OW_DEADLINE", "__OW_TRANSACTION_ID"))


def _set_ow_env(name, value):
    if os.environ.get(name) == value:
        return
    if name in _PER_RUN_ENV:
        try:
            os.environ._data[os.environ.encodekey(name)] = os.environ.encodevalue(value)
            return
        except (AttributeError, TypeError):
            pass
    os.environ[name] = value


def do_run(msg):
    if not ACTION.initialized:
        return 403, {"error": "System not initialized."}
    if not isinstance(msg, dict):
        msg = {}
    for k, v in msg.items():
        if k != "value" and isinstance(v, str):
            _set_ow_env("__OW_" + k.upper(), v)
    args = msg.get("value")
    if args is None:
        args = {}
    activation_id = msg.get("activation_id")
    _begin_logs(activation_id if isinstance(activation_id, str) else "")

    status = 200
    try:
        result = ACTION.main(args)
        if isinstance(result, CoroutineType):
            import asyncio

            result = asyncio.run(result)
    except SystemExit as e:
        # OpenWhisk's launcher process would exit here; so does the proxy.
        _end_logs(False)
        os._exit(e.code if isinstance(e.code, int) else (0 if e.code is None else 1))
    except Exception as e:
        import traceback

        traceback.print_exc()
        result = {"error": str(e)}

    if isinstance(result, (dict, list)):
        try:
            body = _dumps(result).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as e:
            status = 502
            body = _dumps({"error": "The action did not return a valid JSON result: %s" % e}).encode()
    else:
        status = 502
        body = _dumps({"error": NOT_A_DICTIONARY}).encode()
    # A run that wrote nothing needs no sentinels: the response says so and the invoker does not
    # wait for them (two pipe writes and reads fewer per invoke).
    owed = ACTION.init_logs_owed_to is not None and activation_id == ACTION.init_logs_owed_to
    if owed:
        ACTION.init_logs_owed_to = None
    quiet = not (OUT.wrote or ERR.wrote) and bool(OUT.tag) and not owed
    _end_logs(not quiet)
    return status, body, "none" if quiet else "sentinels"


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------

REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 500: "Internal Server Error", 502: "Bad Gateway"}


def _reply(conn, status, payload, logs=None, close=False):
    body = payload if isinstance(payload, bytes) else _dumps(payload).encode("utf-8")
    head = "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s%s\r\n" % (
        status,
        REASONS.get(status, "Unknown"),
        len(body),
        "X-Brisk-Logs: %s\r\n" % logs if logs else "",
        "Connection: close\r\n" if close else "",
    )
    conn.sendall(head.encode("ascii") + body)


class Connection:
    """One client connection and the bytes read from it but not consumed yet."""

    __slots__ = ("sock", "buf", "pos")

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.pos = 0

    def pending(self):
        return self.pos < len(self.buf)

    def readline(self, limit=65537):
        """The next line with its newline (b"" at end of stream); ValueError past `limit`."""
        buf, pos = self.buf, self.pos
        while True:
            nl = buf.find(b"\n", pos)
            if nl >= 0:
                self.pos = nl + 1
                return buf[pos : nl + 1]
            if len(buf) - pos >= limit:
                raise ValueError("line too long")
            data = self.sock.recv(65536)
            buf = buf[pos:] + data
            pos = 0
            self.buf, self.pos = buf, 0
            if not data:
                self.buf = b""
                return buf

    def read(self, n):
        """Exactly `n` bytes; ValueError when the stream ends before."""
        end = self.pos + n
        if end <= len(self.buf):
            data = self.buf[self.pos : end]
            self.pos = end
            return data
        parts = [self.buf[self.pos :]]
        missing = n - len(parts[0])
        self.buf, self.pos = b"", 0
        while missing > 0:
            data = self.sock.recv(min(missing, 1 << 20))
            if not data:
                raise ValueError("truncated body")
            parts.append(data)
            missing -= len(data)
        return b"".join(parts)

    def read_body(self, headers):
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            parts = []
            while True:
                line = self.readline()
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.read(size))
                self.readline()
        length = int(headers.get(b"content-length") or 0)
        return self.read(length) if length > 0 else b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def _shift_deadline(msg, sent):
    """A run queued behind another (it carries X-Brisk-Sent, when the invoker sent it) starts
    only now: its time limit counts from now, so its deadline moves by the time it waited."""
    import time

    try:
        waited = int(time.time() * 1000) - int(sent)
        deadline = int(msg["deadline"])
    except (KeyError, TypeError, ValueError):
        return
    if waited > 0:
        msg["deadline"] = str(deadline + waited)


def _dispatch(method, path, raw, sent=None):
    """(status, payload) or, for a /run, (status, payload, X-Brisk-Logs value)."""
    if path == b"/ready" and method == b"POST":
        return 200, {"ok": True}
    if method != b"POST" or path not in (b"/init", b"/run"):
        return 404, {"error": "Not found."}
    try:
        msg = _loads(raw) if raw else {}
    except (ValueError, RecursionError) as e:
        return 400, {"error": "The request body is not valid JSON: %s" % e}
    if sent is not None and path == b"/run" and isinstance(msg, dict):
        _shift_deadline(msg, sent)
    try:
        return do_run(msg) if path == b"/run" else do_init(msg)
    except Exception as e:  # a bug in the proxy itself
        import traceback

        _write_all(2, ("brisk proxy: internal error: %s\n" % traceback.format_exc()).encode())
        return 500, {"error": "Internal proxy error: %s" % e}


def _serve(conn):
    """Serves the requests buffered on a readable connection, reading each whole (the invoker
    writes a request at once). Returns False once the connection is done."""
    try:
        while True:
            line = conn.readline()
            if not line:
                return False
            parts = line.split()
            if not parts:
                if conn.pending():
                    continue
                return True
            if len(parts) != 3:
                _reply(conn.sock, 400, {"error": "Malformed request line."}, close=True)
                return False
            method, path, version = parts
            headers = {}
            while True:
                h = conn.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.partition(b":")
                headers[k.strip().lower()] = v.strip()
            close = headers.get(b"connection", b"").lower() == b"close" or version == b"HTTP/1.0"
            try:
                raw = conn.read_body(headers)
            except (ValueError, OSError):
                _reply(conn.sock, 400, {"error": "Malformed request body."}, close=True)
                return False
            sent = headers.get(b"x-brisk-sent")
            _reply(conn.sock, *_dispatch(method, path.split(b"?", 1)[0], raw, sent), close=close)
            if close:
                return False
            if not conn.pending():
                return True
    except (OSError, ValueError):
        return False
    except BaseException:  # e.g. KeyboardInterrupt raised in the action: this connection ends
        import traceback

        _write_all(2, ("brisk proxy: %s\n" % traceback.format_exc()).encode())
        return False


def _listen():
    """The listening socket: descriptor BRISK_LISTEN_FD, else Unix at BRISK_SOCKET, else TCP on
    127.0.0.1:BRISK_PORT."""
    listen_fd = posix.environ.get(b"BRISK_LISTEN_FD")
    if listen_fd:
        fd = int(listen_fd)
        if fd <= 2:
            # The socket is stdin: keep it on a descriptor of its own (not inherited by child
            # processes) and give the action, and what it starts, /dev/null as stdin again.
            moved = posix.dup(fd)
            null = posix.open("/dev/null", posix.O_RDONLY)
            posix.dup2(null, fd)
            posix.close(null)
            fd = moved
        else:
            # Not for the action's child processes (descriptors passed in are inheritable).
            posix.set_inheritable(fd, False)
        # Bound and listening already (its family and type are read from the descriptor).
        return _socket.socket(fileno=fd)
    sock_path = posix.environ.get(b"BRISK_SOCKET")
    if sock_path:
        try:
            posix.unlink(sock_path)
        except FileNotFoundError:
            pass
        server = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        server.bind(sock_path)
    else:
        port = int(posix.environ.get(b"BRISK_PORT") or b"8080")
        server = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        server.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
    server.listen(128)
    return server


def _warm_up():
    """What every action needs before its code loads, done once the proxy has its socket."""
    global os
    import os

    _init_json()
    if sys.flags.no_site:
        # Started with -S: site-packages and .pth files now, as a normal start would have.
        import site

        site.main()
    # The first compile() builds the interpreter's AST types (~1 ms); not in the first /init.
    compile("", "<warm-up>", "exec")


def _become_container(native):
    """Zygote mode (docs/fork-server.md): loaded and warmed up like a stem cell, this process
    becomes a fork server on its stdin, and the call returns only in a fork that is now a
    container's runtime: inside its sandbox, with that container's environment, descriptors and
    privileges. The fork then does what `os.fork()` does in a child, and reads its environment
    anew (`os.environ` is a copy the interpreter made when it started)."""
    import ctypes
    import gc

    # Every object made so far goes to the collector's permanent generation, which collections
    # never visit: a fork's collections would otherwise write to the header of every object
    # the zygote made, copying all of their pages.
    gc.freeze()
    # PyDLL: the interpreter's lock stays held during the call, so the fork happens between
    # two bytecodes of this thread, the only one.
    lib = ctypes.PyDLL(os.fsdecode(native))
    if lib.brisk_zygote_serve(0) != 0:
        _write_all(2, b"brisk proxy: the zygote cannot serve\n")
        posix._exit(70)
    ctypes.pythonapi.PyOS_AfterFork_Child()
    environ = ctypes.POINTER(ctypes.c_char_p).in_dll(ctypes.pythonapi, "environ")
    fresh = {}
    i = 0
    while environ[i] is not None:
        key, _, value = environ[i].partition(b"=")
        fresh[key] = value
        i += 1
    # `os.environ` keeps its values in this same dict.
    posix.environ.clear()
    posix.environ.update(fresh)


def _rehearse():
    """In a fork, before it serves: what the first /init and /run do, without their effects (a
    variable set in the environment and removed, log tagging begun and ended without output, a
    request decoded, a module compiled and run, its function called, the result encoded). The
    first writes to memory shared with the zygote copy a page each; rehearsed here, they happen
    while a stem cell waits in the pool rather than during an action's first invoke."""
    os.environ["__BRISK_REHEARSAL"] = "1"
    del os.environ["__BRISK_REHEARSAL"]
    _begin_logs("0")
    _end_logs(False)
    msg = _loads(b'{"value": {"code": "def main(args):\\n    return {\\"ok\\": [1, 2.5, None]}\\n"}}')
    module = ModuleType("__brisk_rehearsal__")
    exec(compile(msg["value"]["code"], os.path.join(os.getcwd(), "__main__.py"), "exec"), module.__dict__)
    _dumps(module.main({"a": "b"})).encode("utf-8")


def main():
    sys.stdout = OUT
    sys.stderr = ERR
    native = posix.environ.get(b"BRISK_ZYGOTE")
    if native:
        _warm_up()
        _become_container(native)
        _rehearse()
    server = _listen()
    tcp = server.family == _socket.AF_INET
    if not native:
        _warm_up()
    listen_fd = server.fileno()
    conns = {}
    poller = select.poll()
    poller.register(listen_fd, select.POLLIN)
    while True:
        for fd, _ in poller.poll():
            if fd == listen_fd:
                try:
                    cfd, _ = server._accept()
                except OSError:
                    continue
                sock = _socket.socket(server.family, _socket.SOCK_STREAM, 0, cfd)
                if tcp:
                    sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
                conns[cfd] = Connection(sock)
                poller.register(cfd, select.POLLIN)
            else:
                conn = conns.get(fd)
                if conn is not None and not _serve(conn):
                    poller.unregister(fd)
                    del conns[fd]
                    conn.close()


if __name__ == "__main__":
    main()
