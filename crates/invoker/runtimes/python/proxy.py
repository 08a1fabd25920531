"""Brisk runtime proxy for Python actions (kind python:3.11).

Speaks the action container contract described in docs/runtime-protocol.md:
POST /init loads the user's code once, POST /run calls its entry point. It
listens on the Unix socket named by BRISK_SOCKET (or 127.0.0.1:BRISK_PORT with
TCP_NODELAY for manual testing).

Runs are serialized. Every line written to sys.stdout/sys.stderr while a run
(or init) is active is tagged "\\x01<activation id>\\x02"; a run ends with the
tagged sentinel on both streams, written before the HTTP response.

Standard library only.
"""

import io
import json
import os
import socket
import sys
import threading
import types

SENTINEL = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"
NOT_A_DICTIONARY = "The action did not return a dictionary or array."
MODULE_NAME = "main__"


# ---------------------------------------------------------------------------
# Log tagging
# ---------------------------------------------------------------------------


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
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
        self._lock = threading.Lock()
        self._partial = ""
        self.tag = b""
        self.active = False
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
        self.lock = threading.Lock()
        self.initialized = False
        self.main = None


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
    module = types.ModuleType(MODULE_NAME)
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
                v = json.dumps(v, ensure_ascii=False)
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
        if isinstance(result, types.CoroutineType):
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
            body = json.dumps(result, ensure_ascii=False).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as e:
            status = 502
            body = json.dumps({"error": "The action did not return a valid JSON result: %s" % e}).encode()
    else:
        status = 502
        body = json.dumps({"error": NOT_A_DICTIONARY}).encode()
    _end_logs(True)
    return status, body


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------

REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 500: "Internal Server Error", 502: "Bad Gateway"}


def _reply(conn, status, payload, close):
    body = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode("utf-8")
    head = "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n" % (
        status,
        REASONS.get(status, "Unknown"),
        len(body),
        "Connection: close\r\n" if close else "",
    )
    conn.sendall(head.encode("ascii") + body)


def _read_body(rfile, headers):
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        parts = []
        while True:
            line = rfile.readline(65537)
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            parts.append(rfile.read(size))
            rfile.readline(65537)
    length = int(headers.get(b"content-length") or 0)
    return rfile.read(length) if length > 0 else b""


def _dispatch(method, path, raw):
    if method != b"POST" or path not in (b"/init", b"/run"):
        return 404, {"error": "Not found."}
    try:
        msg = json.loads(raw) if raw else {}
    except ValueError as e:
        return 400, {"error": "The request body is not valid JSON: %s" % e}
    try:
        with ACTION.lock:
            return do_run(msg) if path == b"/run" else do_init(msg)
    except Exception as e:  # a bug in the proxy itself
        import traceback

        _write_all(2, ("brisk proxy: internal error: %s\n" % traceback.format_exc()).encode())
        return 500, {"error": "Internal proxy error: %s" % e}


def _serve_connection(conn, tcp):
    """HTTP/1.1 with keep-alive on one connection. A small hand-written server: the standard
    library's http.server pulls in email, http.client and ssl, which would double the start-up
    time and the memory of every container."""
    if tcp:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rfile = conn.makefile("rb", buffering=65536)
    try:
        while True:
            line = rfile.readline(65537)
            if not line:
                return
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 3:
                _reply(conn, 400, {"error": "Malformed request line."}, True)
                return
            method, path, version = parts
            headers = {}
            while True:
                h = rfile.readline(65537)
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.partition(b":")
                headers[k.strip().lower()] = v.strip()
            close = headers.get(b"connection", b"").lower() == b"close" or version == b"HTTP/1.0"
            try:
                raw = _read_body(rfile, headers)
            except (ValueError, OSError):
                _reply(conn, 400, {"error": "Malformed request body."}, True)
                return
            status, payload = _dispatch(method, path.split(b"?", 1)[0], raw)
            _reply(conn, status, payload, close)
            if close:
                return
    except (OSError, ValueError):
        return
    finally:
        try:
            rfile.close()
            conn.close()
        except OSError:
            pass


def main():
    sys.stdout = OUT
    sys.stderr = ERR
    sock_path = os.environ.get("BRISK_SOCKET")
    if sock_path:
        try:
            os.unlink(sock_path)
        except FileNotFoundError:
            pass
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(sock_path)
        tcp = False
    else:
        port = int(os.environ.get("BRISK_PORT") or "8080")
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        tcp = True
    server.listen(128)
    while True:
        try:
            conn, _ = server.accept()
        except InterruptedError:
            continue
        threading.Thread(target=_serve_connection, args=(conn, tcp), daemon=True).start()


if __name__ == "__main__":
    main()
