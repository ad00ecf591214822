# nimbus_ric.py - Nimbus's built-in Lambda runtime interface client (RIC) for Python functions.
#
# Embedded in the nimbus binary, compiled once per server start (`nimbus_ric.pyc`, so no
# cold start compiles it again) and run as `python3 nimbus_ric.pyc` (no arguments) with the
# function's code directory as cwd. It speaks the Lambda Runtime API 2018-06-01 at
# $AWS_LAMBDA_RUNTIME_API over one keep-alive connection, loads `_HANDLER` (path/module.func)
# and calls handler(event, context) for each invocation, mirroring AWS's awslambdaric:
# same context object, same error types/messages and errorMessage/errorType/stackTrace shape.
# Standard library only; works on Python 3.9+.

import _socket  # the C module: socket.py's enum set-up alone costs ~10 ms at start-up
import importlib
import os
import sys
import time

# Kept lean for cold starts: http.client (ssl, email) costs ~40 ms of imports, more than
# `python3 -c pass` itself, so the Runtime API is spoken over a raw socket below; `json`
# (which pulls in `re` and `enum`, ~11 ms) is replaced by its C accelerator below;
# traceback and logging are imported only when needed.


def _json_module():
    import json
    return json


def _c_json():
    """json.loads/json.dumps on CPython's C accelerator `_json` alone, giving the same
    results; anything unusual (errors, odd encodings) goes to the json package itself."""
    import _json

    class Context:
        strict = True
        object_hook = None
        object_pairs_hook = None
        parse_float = float
        parse_int = int
        parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__

    scan = _json.make_scanner(Context())
    space = " \t\n\r"

    def loads(data):
        if isinstance(data, (bytes, bytearray)):
            if data[:3] == b"\xef\xbb\xbf" or b"\x00" in data[:4]:  # a BOM, or UTF-16/32
                return _json_module().loads(data)
            data = data.decode("utf-8")
        start = len(data) - len(data.lstrip(space))
        try:
            value, end = scan(data, start)
        except StopIteration:
            return _json_module().loads(data)  # it words the error
        if data[end:].strip(space):
            return _json_module().loads(data)
        return value

    def dumps(value, default=None):
        def refuse(o):
            raise TypeError("Object of type %s is not JSON serializable" % type(o).__name__)
        encode = _json.make_encoder({}, default or refuse, _json.encode_basestring_ascii, None,
                                    ": ", ", ", False, False, True)
        return "".join(encode(value, 0))

    # The accelerator's interface is CPython's own: check it gives what json would.
    if loads(b' {"a": [1, 2.5, "\\u00e9", null, true]} ') != {"a": [1, 2.5, "\u00e9", None, True]}:
        raise ImportError("unexpected _json")
    if dumps({"a": [1, 2.5, "\u00e9", None, float("nan")]}) != '{"a": [1, 2.5, "\\u00e9", null, NaN]}':
        raise ImportError("unexpected _json")
    return loads, dumps


try:
    json_loads, json_dumps = _c_json()
except Exception:  # not CPython, or its accelerator changed: the json package it is
    json_loads, json_dumps = _json_module().loads, _json_module().dumps

BASE = "/2018-06-01/runtime"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
# The name this file's code was compiled under (run from a precompiled .pyc, __file__ is that).
RIC_FILE = os.path.abspath(_json_module.__code__.co_filename)


class Fault(Exception):
    """An error whose type/message are decided by the runtime (Runtime.*), not by user code."""

    def __init__(self, error_type, msg, trace=None):
        super().__init__(msg)
        self.error_type, self.msg, self.trace = error_type, msg, trace


class RuntimeApi:
    """Minimal HTTP/1.1 client: one keep-alive connection, reopened once if it drops.

    Requests carry Content-Length; responses may use Content-Length or chunked encoding.
    """

    def __init__(self, address):
        host, _, port = address.rpartition(":")
        self.address, self.host = (host.strip("[]"), int(port)), address
        self.sock, self.buf = None, bytearray()

    def close(self):
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buf = None, bytearray()

    def request(self, method, path, body=None, headers=()):
        head = "%s %s%s HTTP/1.1\r\nHost: %s\r\n" % (method, BASE, path, self.host)
        if body is not None:
            head += "Content-Length: %d\r\n" % len(body)
        head += "".join("%s: %s\r\n" % kv for kv in headers)
        data = (head + "\r\n").encode("utf-8") + (body or b"")
        for attempt in (0, 1):
            try:
                if self.sock is None:
                    family = _socket.AF_INET6 if ":" in self.address[0] else _socket.AF_INET
                    self.sock = _socket.socket(family, _socket.SOCK_STREAM)  # blocking, no timeout: /next long-polls
                    self.sock.connect(self.address)
                    self.sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
                self.sock.sendall(data)
                return self._read_response()
            except (OSError, ValueError):
                self.close()
                if attempt:
                    raise ConnectionError("Runtime API request %s %s failed" % (method, path))

    def _fill(self):
        data = self.sock.recv(262144)
        if not data:
            raise ConnectionError("connection closed")
        self.buf += data

    def _readline(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            if len(self.buf) > 65536:
                raise ValueError("header line too long")
            self._fill()

    def _read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def _read_response(self):
        status = int(self._readline().split(None, 2)[1])
        headers = {}
        while True:
            line = self._readline()
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("utf-8", "replace").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self._readline().split(b";")[0], 16)
                if size == 0:
                    break
                chunks.append(self._read_exact(size))
                self._readline()
            while self._readline() not in (b"\r\n", b"\n"):  # trailers
                pass
            body = b"".join(chunks)
        else:
            body = self._read_exact(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, body


def make_error(message, error_type, stack_trace, request_id=""):
    return {
        "errorMessage": message or "",
        "errorType": error_type or "",
        "requestId": request_id or "",
        "stackTrace": stack_trace or [],
    }


def error_from_exception(exc, request_id=""):
    """Like AWS's build_fault_result: the exception's own type and message, user frames only."""
    if isinstance(exc, Fault):
        return make_error(exc.msg, exc.error_type, exc.trace, request_id)
    import traceback

    frames = [(f.filename, f.lineno, f.name, f.line) for f in traceback.extract_tb(exc.__traceback__)]
    for i, frame in enumerate(frames):  # drop this file's leading frames, as AWS drops bootstrap.py's
        if os.path.abspath(frame[0]) != RIC_FILE:
            frames = frames[i:]
            break
    return make_error(str(exc), type(exc).__name__, traceback.format_list(frames), request_id)


def log_error(err):
    """Write the error to stderr the way AWS logs it: `[ERROR] Type: message` plus the traceback."""
    lines = ["[ERROR] %s: %s" % (err["errorType"], err["errorMessage"])]
    if err["stackTrace"]:
        lines.append("Traceback (most recent call last):")
        for element in err["stackTrace"]:
            lines.extend(element.splitlines())
    sys.stderr.write("\n".join(lines) + "\n")
    sys.stderr.flush()


def load_handler(handler):
    """Resolve `path/module.func` the way awslambdaric's _get_handler does."""
    try:
        modname, fname = handler.rsplit(".", 1)
    except ValueError as e:
        raise Fault("Runtime.MalformedHandlerName", "Bad handler '{}': {}".format(handler, e))
    try:
        if modname.split(".")[0] in sys.builtin_module_names:
            raise Fault("Runtime.BuiltInModuleConflict",
                        "Cannot use built-in module {} as a handler module".format(modname))
        module = importlib.import_module(modname.replace("/", "."))
    except ImportError as e:
        raise Fault("Runtime.ImportModuleError", "Unable to import module '{}': {}".format(modname, e))
    except SyntaxError as e:
        trace = ['  File "%s" Line %s\n    %s' % (e.filename, e.lineno, e.text)]
        raise Fault("Runtime.UserCodeSyntaxError", "Syntax error in module '{}': {}".format(modname, e), trace)
    try:
        return getattr(module, fname)
    except AttributeError:
        raise Fault("Runtime.HandlerNotFound", "Handler '{}' missing on module '{}'".format(fname, modname))


class _Fields(object):
    """Plain attribute object built from a dict, keeping only the class's known fields."""
    __slots__ = ()

    @classmethod
    def from_dict(cls, d):
        if d is None:
            return None
        obj = cls()
        for field in cls.__slots__:
            setattr(obj, field, d.get(field) if isinstance(d, dict) else None)
        return obj

    def __repr__(self):
        return "%s([%s])" % (type(self).__name__, ",".join("%s=%s" % (f, getattr(self, f)) for f in self.__slots__))


class CognitoIdentity(_Fields):
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")


class Client(_Fields):
    __slots__ = ("installation_id", "app_title", "app_version_name", "app_version_code", "app_package_name")


class ClientContext(_Fields):
    __slots__ = ("custom", "env", "client")


class LambdaContext(object):
    """The context object AWS passes to Python handlers (values from env vars and /next headers)."""

    def __init__(self, request_id, function_arn, deadline_ms, client_context, identity):
        env = os.environ
        self.aws_request_id = request_id
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME")
        self.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")  # a str, as on AWS
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.invoked_function_arn = function_arn
        self.client_context = ClientContext.from_dict(client_context)
        if self.client_context is not None:
            self.client_context.client = Client.from_dict(self.client_context.client)
        identity = identity if isinstance(identity, dict) else {}
        self.identity = CognitoIdentity()
        self.identity.cognito_identity_id = identity.get("cognitoIdentityId")
        self.identity.cognito_identity_pool_id = identity.get("cognitoIdentityPoolId")
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        return max(self._deadline_ms - int(time.time() * 1000), 0)

    def log(self, msg):
        sys.stdout.write(str(msg))

    def __repr__(self):
        fields = ("aws_request_id", "log_group_name", "log_stream_name", "function_name", "memory_limit_in_mb",
                  "function_version", "invoked_function_arn", "client_context", "identity")
        return "LambdaContext([%s])" % ",".join("%s=%s" % (f, getattr(self, f)) for f in fields)


def parse_json_header(value, name):
    if not value:
        return None
    try:
        return json_loads(value)
    except Exception as e:
        raise Fault("Runtime.LambdaContextUnmarshalError", "Unable to parse {} JSON: {}".format(name, e))


def _json_default(obj):
    if type(obj).__name__ == "Decimal":  # e.g. DynamoDB items, which AWS's encoder accepts
        return int(obj) if obj.is_finite() and obj == obj.to_integral_value() else float(obj)
    raise TypeError("Object of type %s is not JSON serializable" % type(obj).__name__)


def marshal_response(result):
    if isinstance(result, bytes):
        return result, "application/unknown"
    try:
        return json_dumps(result, default=_json_default).encode("utf-8"), "application/json"
    except Exception as e:
        raise Fault("Runtime.MarshalError", "Unable to marshal response: {}".format(e))


def unmarshal_event(body, content_type):
    if (content_type or "application/json").split(";")[0].strip().lower() != "application/json":
        return body
    if not body.strip():
        return None
    try:
        return json_loads(body)
    except Exception as e:
        raise Fault("Runtime.UnmarshalError", "Unable to unmarshal input: {}".format(e))


_current_request_id = ""
_logging_ready = False


def setup_logging():
    """Once the function uses `logging`, give the root logger AWS's handler and format,
    so logging.getLogger().info(...) reaches the log as it does on Lambda."""
    global _logging_ready
    if _logging_ready or "logging" not in sys.modules:
        return
    _logging_ready = True
    import logging

    class RequestIdFilter(logging.Filter):
        def filter(self, record):
            record.aws_request_id = _current_request_id
            return True

    handler = logging.StreamHandler(sys.stdout)
    formatter = logging.Formatter("[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
                                  "%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    levels = {"TRACE": "DEBUG", "DEBUG": "DEBUG", "INFO": "INFO", "WARN": "WARNING", "ERROR": "ERROR", "FATAL": "CRITICAL"}
    level = levels.get(os.environ.get("AWS_LAMBDA_LOG_LEVEL", "").upper())
    if level:
        root.setLevel(level)


def post_error(api, path, err):
    error_type = "".join(c if " " <= c <= "~" else "?" for c in err["errorType"])  # keep the header valid
    api.request("POST", path, json_dumps(err).encode("utf-8"),
                (("Content-Type", "application/json"), (ERROR_TYPE_HEADER, error_type)))


def handle_invocation(api, handler, headers, body):
    global _current_request_id
    request_id = headers.get("lambda-runtime-aws-request-id", "")
    _current_request_id = request_id
    trace_id = headers.get("lambda-runtime-trace-id")
    if trace_id:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)
    setup_logging()
    try:
        context = LambdaContext(
            request_id,
            headers.get("lambda-runtime-invoked-function-arn"),
            int(headers.get("lambda-runtime-deadline-ms") or 0),
            parse_json_header(headers.get("lambda-runtime-client-context"), "Client Context"),
            parse_json_header(headers.get("lambda-runtime-cognito-identity"), "Cognito Identity"),
        )
        event = unmarshal_event(body, headers.get("content-type"))
        result, content_type = marshal_response(handler(event, context))
    except Exception as e:
        err = error_from_exception(e, request_id)
        log_error(err)
        post_error(api, "/invocation/%s/error" % request_id, err)
        return
    api.request("POST", "/invocation/%s/response" % request_id, result, (("Content-Type", content_type),))


def main():
    if "AWS_LAMBDA_RUNTIME_API" not in os.environ:
        sys.exit("nimbus_ric: AWS_LAMBDA_RUNTIME_API is not set")
    api = RuntimeApi(os.environ["AWS_LAMBDA_RUNTIME_API"])
    sys.path[0:0] = [os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()]
    try:
        handler = load_handler(os.environ.get("_HANDLER", ""))
    except Exception as e:
        err = error_from_exception(e)
        log_error(err)
        try:
            post_error(api, "/init/error", err)
        except OSError:
            pass
        sys.exit(1)
    try:
        while True:
            status, headers, body = api.request("GET", "/invocation/next")
            if status != 200:
                sys.exit(1)
            handle_invocation(api, handler, headers, body)
    except OSError:
        sys.exit(1)  # the Runtime API is gone: the server has dropped this instance


if __name__ == "__main__":
    main()
