"""Brisk runtime proxy for native executables (kind blackbox, dockerskeleton contract).

Speaks the action container contract described in docs/runtime-protocol.md.
/init stores the executable: `code` is a script (written to `exec` in a private
directory; without a `#!` line it runs under /bin/bash), or `codeDir` is an
unpacked zip with an executable named `exec` at its top.

/run starts the executable once per activation with the JSON of `value` as
argv[1] (omitted when it exceeds the kernel's single-argument limit) and as one
line on stdin (then stdin is closed); the `__OW_*` variables are in its
environment and its working directory is the code directory. Every stdout line
except the last non-empty one is a log line; the last one is the result and
must be a JSON object or array. As an extension, a process that writes a line
to file descriptor 3 (the actionloop convention) has that line taken as the
result, and then all of its stdout is log output.

Runs are serialized; log lines are tagged "\\x01<activation id>\\x02" and a run
ends with the tagged sentinel on stdout and stderr before the HTTP response.

Standard library only.
"""

import base64
import http.server
import io
import json
import os
import selectors
import signal
import socket
import socketserver
import stat
import sys
import tempfile
import threading
import time
import traceback
import zipfile

SENTINEL = b"XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"
NOT_A_DICTIONARY = "The action did not return a dictionary or array."
EXITED = "The action did not produce a valid response and exited unexpectedly."
# Linux refuses a single argv string longer than 32 pages (MAX_ARG_STRLEN).
MAX_ARG = 128 * 1024 - 1


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except InterruptedError:
            continue
        except OSError:
            return
        view = view[n:]


class Logs:
    """Writes tagged lines to the proxy's own stdout/stderr."""

    def __init__(self, activation_id):
        self.tag = ("\x01%s\x02" % activation_id).encode("utf-8") if activation_id else b""

    def lines(self, fd, lines):
        if lines:
            _write_all(fd, b"".join(self.tag + line + b"\n" for line in lines))

    def text(self, fd, text):
        self.lines(fd, text.encode("utf-8", errors="replace").split(b"\n"))

    def end(self):
        _write_all(1, self.tag + SENTINEL + b"\n")
        _write_all(2, self.tag + SENTINEL + b"\n")


class Action:
    def __init__(self):
        self.lock = threading.Lock()
        self.initialized = False
        self.exec_path = None
        self.cwd = None
        self.argv0 = None  # e.g. ["/bin/bash"] for scripts without a #! line


ACTION = Action()


def _interpreter_for(path):
    """The argv prefix needed to run `path`: none for an executable with a `#!`
    line or an ELF binary, /bin/bash for a script without `#!`, and the `#!`
    interpreter itself when the file could not be made executable (for example
    on a read-only code directory)."""
    with open(path, "rb") as f:
        head = f.readline(4096)
    executable = os.access(path, os.X_OK)
    if head.startswith(b"\x7fELF"):
        return []
    if head.startswith(b"#!"):
        if executable:
            return []
        parts = head[2:].decode("utf-8", errors="replace").strip().split(None, 1)
        if not parts:
            return ["/bin/bash"]
        return parts
    return ["/bin/bash"]


def _prepare_dir(code_dir):
    if not os.path.isdir(code_dir):
        raise ValueError("the code directory %s does not exist" % code_dir)
    exec_path = os.path.join(os.path.abspath(code_dir), "exec")
    if not os.path.isfile(exec_path):
        raise ValueError("the zip file does not contain an executable named 'exec' at its top level")
    if not os.access(exec_path, os.X_OK):
        try:
            mode = os.stat(exec_path).st_mode
            os.chmod(exec_path, mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        except OSError:
            pass  # _interpreter_for falls back to the #! interpreter
    return exec_path


def do_init(msg):
    if ACTION.initialized:
        return 403, {"error": "Cannot initialize the action more than once."}
    value = msg.get("value") if isinstance(msg, dict) else None
    if not isinstance(value, dict):
        value = {}
    main_name = value.get("main")
    code = value.get("code")
    code_dir = value.get("codeDir")
    if not isinstance(code, str) or not code:
        code = None
    if not isinstance(code_dir, str) or not code_dir:
        code_dir = None
    if not isinstance(main_name, str) or not main_name or (code is None and code_dir is None):
        return 403, {"error": "Missing main/no code to execute."}

    env = value.get("env")
    activation_id = None
    if isinstance(env, dict):
        for k, v in env.items():
            if v is None:
                v = ""
            elif not isinstance(v, str):
                v = json.dumps(v, ensure_ascii=False)
            os.environ[str(k)] = v
        activation_id = env.get("__OW_ACTIVATION_ID")
    logs = Logs(activation_id if isinstance(activation_id, str) else "")

    try:
        if code_dir is None:
            code_dir = tempfile.mkdtemp(prefix="brisk-action-")
            if value.get("binary") is True:
                data = base64.b64decode(code, validate=False)
                if data[:4] == b"PK\x03\x04":
                    with zipfile.ZipFile(io.BytesIO(data)) as zf:
                        zf.extractall(code_dir)
                else:
                    with open(os.path.join(code_dir, "exec"), "wb") as f:
                        f.write(data)
            else:
                with open(os.path.join(code_dir, "exec"), "w", encoding="utf-8") as f:
                    f.write(code)
        exec_path = _prepare_dir(code_dir)
        argv0 = _interpreter_for(exec_path)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        reason = "Initialization has failed due to: %s" % e
        logs.text(2, reason)
        logs.end()
        return 502, {"error": reason}

    ACTION.exec_path = exec_path
    ACTION.cwd = os.path.dirname(exec_path)
    ACTION.argv0 = argv0
    os.chdir(ACTION.cwd)
    ACTION.initialized = True
    return 200, {"ok": True}


def _spawn(argv, env):
    """Starts the executable with fresh pipes on fds 0-3 (fd 3 for an actionloop
    style result). posix_spawn avoids forking the proxy; the proxy's own cwd is
    the code directory, which the child inherits."""
    made = []
    try:
        in_r, in_w = os.pipe()
        made += [in_r, in_w]
        out_r, out_w = os.pipe()
        made += [out_r, out_w]
        err_r, err_w = os.pipe()
        made += [err_r, err_w]
        r3, w3 = os.pipe()
        made += [r3, w3]
        if w3 == 3:  # dup2(3, 3) would leave close-on-exec set
            w3b = os.dup(w3)
            made.append(w3b)
            w3 = w3b
        actions = [
            (os.POSIX_SPAWN_DUP2, in_r, 0),
            (os.POSIX_SPAWN_DUP2, out_w, 1),
            (os.POSIX_SPAWN_DUP2, err_w, 2),
            (os.POSIX_SPAWN_DUP2, w3, 3),
        ]
        # Python ignores SIGPIPE/SIGXFSZ; the action gets the default dispositions.
        pid = os.posix_spawn(argv[0], argv, env, file_actions=actions, setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))
    except OSError:
        for fd in made:
            os.close(fd)
        raise
    for fd in made:
        if fd not in (in_w, out_r, err_r, r3):
            os.close(fd)
    return pid, in_w, out_r, err_r, r3


def do_run(msg):
    if not ACTION.initialized:
        return 403, {"error": "System not initialized."}
    if not isinstance(msg, dict):
        msg = {}
    env = dict(os.environ)
    for k, v in msg.items():
        if k != "value" and isinstance(v, str):
            env["__OW_" + k.upper()] = v
    value = msg.get("value")
    if value is None:
        value = {}
    arg = json.dumps(value, ensure_ascii=False)
    activation_id = msg.get("activation_id")
    logs = Logs(activation_id if isinstance(activation_id, str) else "")

    argv = ACTION.argv0 + [ACTION.exec_path]
    if len(arg.encode("utf-8")) <= MAX_ARG:
        argv.append(arg)
    try:
        pid, in_w, out_fd, err_fd, r3 = _spawn(argv, env)
    except OSError as e:
        logs.text(2, "failed to start the action: %s" % e)
        logs.end()
        return 502, {"error": EXITED}

    stdin_data = (arg + "\n").encode("utf-8")

    def feed():
        _write_all(in_w, stdin_data)
        os.close(in_w)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()

    # Stream stdout/stderr lines as they come; hold back the latest non-empty
    # stdout line (and empty lines after it) until we know whether it is last.
    pending = []  # [last non-empty line, trailing empty lines...]
    fd3_data = []
    partial = {out_fd: b"", err_fd: b""}
    sel = selectors.DefaultSelector()
    sel.register(out_fd, selectors.EVENT_READ)
    sel.register(err_fd, selectors.EVENT_READ)
    sel.register(r3, selectors.EVENT_READ)
    open_fds = 3

    def stdout_lines(lines):
        nonlocal pending
        emit = []
        for line in lines:
            if line.strip():
                emit.extend(pending)
                pending = [line]
            elif pending:
                pending.append(line)
            else:
                emit.append(line)
        logs.lines(1, emit)

    while open_fds:
        for key, _ in sel.select():
            fd = key.fd
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                sel.unregister(fd)
                open_fds -= 1
                if fd in partial and partial[fd]:
                    rest = [partial[fd]]
                    partial[fd] = b""
                    if fd == out_fd:
                        stdout_lines(rest)
                    else:
                        logs.lines(2, rest)
                continue
            if fd == r3:
                fd3_data.append(chunk)
                continue
            data = partial[fd] + chunk
            parts = data.split(b"\n")
            partial[fd] = parts.pop()
            if fd == out_fd:
                stdout_lines(parts)
            else:
                logs.lines(2, parts)
    sel.close()
    for fd in (out_fd, err_fd, r3):
        os.close(fd)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    feeder.join()

    result = None
    fd3 = [line for line in b"".join(fd3_data).split(b"\n") if line.strip()]
    if fd3:
        logs.lines(1, pending)
        candidate = fd3[0]
    else:
        candidate = pending[0] if pending else None
    if candidate is not None:
        try:
            parsed = json.loads(candidate)
            if isinstance(parsed, (dict, list)):
                result = parsed
        except ValueError:
            pass
    if not fd3 and pending:
        # A valid result is not a log line; anything else is.
        logs.lines(1, pending[1:] if result is not None else pending)

    if result is not None:
        status = 200
        body = json.dumps(result, ensure_ascii=False).encode("utf-8")
    elif code != 0:
        status = 502
        body = json.dumps({"error": EXITED}).encode()
    else:
        status = 502
        body = json.dumps({"error": NOT_A_DICTIONARY}).encode()
    logs.end()
    return status, body


REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 500: "Internal Server Error", 502: "Bad Gateway"}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "brisk-native"
    sys_version = ""

    def setup(self):
        super().setup()
        if self.server.tcp:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format, *args):
        pass

    def _reply(self, status, payload):
        body = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode("utf-8")
        head = "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (
            status,
            REASONS.get(status, "Unknown"),
            len(body),
        )
        if self.close_connection:
            head += "Connection: close\r\n"
        self.wfile.write(head.encode("ascii") + b"\r\n" + body)

    def _read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def do_POST(self):
        try:
            raw = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self._reply(400, {"error": "Malformed request body."})
            return
        path = self.path
        if path == "/ready":
            self._reply(200, {"ok": True})
            return
        if path not in ("/init", "/run"):
            self._reply(404, {"error": "Not found."})
            return
        try:
            msg = json.loads(raw) if raw else {}
        except ValueError as e:
            self._reply(400, {"error": "The request body is not valid JSON: %s" % e})
            return
        # Runs are served one at a time, and each is answered before the next starts: a run
        # queued behind another (docs/runtime-protocol.md) must not start before the invoker
        # can know that the one ahead of it ended.
        queued_at = time.time()
        with ACTION.lock:
            # A run that waited here was queued behind another: its time limit counts from
            # now, so its deadline moves by the time it waited.
            waited = int((time.time() - queued_at) * 1000)
            if waited > 0 and path == "/run" and isinstance(msg, dict):
                try:
                    msg["deadline"] = str(int(msg["deadline"]) + waited)
                except (KeyError, TypeError, ValueError):
                    pass
            try:
                status, payload = do_run(msg) if path == "/run" else do_init(msg)
            except Exception as e:  # a bug in the proxy itself
                _write_all(2, ("brisk proxy: internal error: %s\n" % traceback.format_exc()).encode())
                status, payload = 500, {"error": "Internal proxy error: %s" % e}
            self._reply(status, payload)

    def _not_found(self):
        self._reply(404, {"error": "Not found."})

    do_GET = do_PUT = do_DELETE = do_PATCH = _not_found


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    tcp = False


class TCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128
    tcp = True


def _become_container(native):
    """Zygote mode (docs/fork-server.md): this process becomes a fork server on its stdin, and
    the call returns only in a fork that is now a container's runtime: inside its sandbox, with
    that container's environment, descriptors and privileges. The fork then does what
    `os.fork()` does in a child, and reads its environment anew (`os.environ` is a copy the
    interpreter made when it started)."""
    import ctypes
    import gc

    # Every object made so far goes to the collector's permanent generation, which collections
    # never visit: a fork's collections would otherwise write to the header of every object
    # the zygote made, copying all of their pages.
    gc.freeze()
    # PyDLL: the interpreter's lock stays held during the call, so the fork happens between
    # two bytecodes of this thread, the only one.
    lib = ctypes.PyDLL(native)
    if lib.brisk_zygote_serve(0) != 0:
        _write_all(2, b"brisk proxy: the zygote cannot serve\n")
        os._exit(70)
    ctypes.pythonapi.PyOS_AfterFork_Child()
    environ = ctypes.POINTER(ctypes.c_char_p).in_dll(ctypes.pythonapi, "environ")
    fresh = {}
    i = 0
    while environ[i] is not None:
        key, _, value = environ[i].partition(b"=")
        fresh[key] = value
        i += 1
    os.environ._data.clear()
    os.environ._data.update(fresh)


def main():
    native = os.environ.get("BRISK_ZYGOTE")
    if native:
        _become_container(native)
    listen_fd = os.environ.get("BRISK_LISTEN_FD")
    sock_path = os.environ.get("BRISK_SOCKET")
    if listen_fd:
        # Socket activation: the socket listens already. When it is stdin, it moves to a
        # descriptor of its own and /dev/null becomes stdin again.
        fd = int(listen_fd)
        if fd <= 2:
            moved = os.dup(fd)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, fd)
            os.close(null)
            fd = moved
        else:
            # Not for the action's child processes (descriptors passed in are inheritable).
            os.set_inheritable(fd, False)
        server = UnixServer(None, Handler, bind_and_activate=False)
        server.socket.close()
        server.socket = socket.socket(fileno=fd)
    elif sock_path:
        try:
            os.unlink(sock_path)
        except FileNotFoundError:
            pass
        server = UnixServer(sock_path, Handler)
    else:
        port = int(os.environ.get("BRISK_PORT") or "8080")
        server = TCPServer(("127.0.0.1", port), Handler)
    server.serve_forever(poll_interval=3600)


if __name__ == "__main__":
    sys.exit(main())
