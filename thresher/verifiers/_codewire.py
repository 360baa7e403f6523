"""Both ends of the code verifier, run as scripts with the standard library alone.

``serve`` runs inside the sandbox: it executes the candidate program, then answers requests about
the names it defined (call this, get that attribute, iterate that) on two descriptors. ``judge``
runs outside the sandbox in a process of its own: it executes the tests against proxies for those
names and prints the verdict on a descriptor the program never holds. So the verdict cannot be
forged from inside: the program never sees the tests or any marker, its exit status means nothing,
and patching ``builtins``, ``assert`` helpers, ``sys.excepthook`` or ``atexit`` only changes the
sandboxed process, not the one that runs the tests.

The tests see only what they may: their own code, the true builtins, the prompt's own definitions
(executed here from the ground truth, never taken from the program), the entry point, and those of the
program's names the tests read without defining them. A program that rebinds ``range``, ``sorted`` or
``abs``, redefines a helper the prompt gave it, or defines ``check`` changes nothing the tests use.

Only plain data crosses, by exact type: None, bool, int (any size), float, complex, str, bytes,
bytearray, Fraction, Decimal, lists, tuples, namedtuples, dicts (and their keys/values/items views),
Counter, OrderedDict, defaultdict (with a builtin type as its default), deque, sets and frozensets of
them, nested up to MAX_DEPTH. A subclass, a value that contains itself, or any other object stays inside and the
judge gets a handle, which compares equal only to itself, so an object whose ``__eq__`` always
returns True passes nothing. A handle's attributes, items, length, truth and iteration are asked
for, and come back as plain data or further handles. Arguments are copies: a test that checks an
in-place mutation of its argument cannot see it. Any lost answer (the program died, timed out or
sent something malformed) fails the run even if a test swallowed the error, and so does a
``StopIteration`` (or any exception that ends an iteration early) raised by the program: inside the
tests it would silently cut a loop such as ``all(map(f, cases))`` short.
"""

import ast
import base64
import builtins
import collections
import decimal
import fractions
import importlib
import json
import os
import select
import sys
import time
import traceback

ENDED = "the program ended before the tests finished"
MAX_MESSAGE = 128 << 20
MAX_DEPTH = 3000
# exceptions that end an iteration (or a generator) early when they escape into the tests
_ENDS_ITERATION = {"StopIteration", "StopAsyncIteration", "GeneratorExit"}
_SEQUENCES = {list: "l", tuple: "t", set: "s", frozenset: "f"}
_BUILDERS = {"l": list, "t": tuple, "s": set, "f": frozenset}
# Standard containers cross as their content and are rebuilt on the other side; the classes are
# taken now, before any program runs, so a program that rebinds collections.Counter cannot pose as one.
_MAPPINGS = {collections.Counter: "C", collections.OrderedDict: "O", collections.defaultdict: "D"}
_REBUILD = {"C": collections.Counter, "O": collections.OrderedDict, "D": lambda items: collections.defaultdict(None, items), "d": dict}
_DEQUE = collections.deque
_FRACTION, _DECIMAL = fractions.Fraction, decimal.Decimal
_VIEWS = {type({}.keys()): "K", type({}.values()): "V", type({}.items()): "I"}
_NAMEDTUPLE = collections.namedtuple
_namedtuples: dict[tuple[str, tuple[str, ...]], type] = {}
_TYPES = {t.__name__: t for t in (int, float, complex, str, bytes, bool, list, tuple, dict, set, frozenset, type(None))}
_MODULE = type(collections)
_NOT_IMPORTED = {"antigravity", "this", "turtle", "turtledemo", "tkinter", "idlelib", "pydoc", "webbrowser"}


class Lost(BaseException):
    """The other end is gone, silent past the deadline, or broke the protocol (not catchable as Exception)."""


def encode(value, refs, depth=0, path=None):
    """Plain data as JSON-ready values; anything else (or a value that contains itself) becomes a handle in
    ``refs`` (or TypeError without)."""
    if depth > MAX_DEPTH:
        raise ValueError("data nested too deeply")
    kind = type(value)
    if value is None or kind is bool or kind is str or kind is float:
        return value
    if kind is int:
        return {"i": format(value, "x")} if abs(value) >= 1 << 53 else value
    if kind is complex:
        return {"c": [value.real, value.imag]}
    if kind is bytes or kind is bytearray:
        return {"b" if kind is bytes else "B": base64.b64encode(value).decode()}
    if kind is _FRACTION:
        return {"F": [format(value.numerator, "x"), format(value.denominator, "x")]}
    if kind is _DECIMAL:
        return {"X": str(value)}
    path = path if path is not None else set()
    if id(value) in path:  # a value that contains itself has no plain-data form
        return _handle(value, refs)
    path.add(id(value))
    try:
        down = lambda v: encode(v, refs, depth + 1, path)  # noqa: E731
        if kind in _SEQUENCES:
            return {_SEQUENCES[kind]: [down(v) for v in value]}
        if kind is dict or kind in _MAPPINGS:
            tag = "d" if kind is dict else _MAPPINGS[kind]
            items = [[down(k), down(v)] for k, v in dict.items(value)]
            if kind is collections.defaultdict:
                factory = value.default_factory
                name = factory.__name__ if factory is not None and _TYPES.get(factory.__name__) is factory else None
                return {"E": [name, items]}
            return {tag: items}
        if kind in _VIEWS:
            tag = _VIEWS[kind]
            return {tag: [[down(k), down(v)] for k, v in value] if tag == "I" else [down(v) for v in value]}
        if kind is _DEQUE:
            return {"q": [down(v) for v in value]}
        if kind.__bases__ == (tuple,) and _is_namedtuple(kind):
            return {"N": [kind.__name__, list(kind._fields), [down(v) for v in tuple.__iter__(value)]]}
    finally:
        path.discard(id(value))
    if kind is type and _TYPES.get(value.__name__) is value:
        return {"T": value.__name__}
    if kind is _MODULE and value.__name__ in sys.stdlib_module_names and value.__name__ not in _NOT_IMPORTED:
        return {"M": value.__name__}
    return _handle(value, refs)


def _is_namedtuple(kind):
    fields = kind.__dict__.get("_fields")
    return type(fields) is tuple and all(type(f) is str and f.isidentifier() for f in fields) and "_make" in kind.__dict__


def _handle(value, refs):
    if isinstance(refs, list):
        refs.append(value)
        return {"r": len(refs) - 1}
    return refs(value)


def decode(data, handle, depth=0):
    """The inverse of ``encode``, strict: anything not written by it is a protocol error."""
    if depth > MAX_DEPTH:
        raise ValueError("data nested too deeply")
    if data is None or type(data) in (bool, str, float, int):
        return data
    if type(data) is not dict or len(data) != 1:
        raise ValueError(f"malformed value {str(data)[:80]}")
    ((tag, body),) = data.items()

    def down(v):
        return decode(v, handle, depth + 1)

    if tag == "i":
        return int(body, 16)
    if tag == "c":
        return complex(float(body[0]), float(body[1]))
    if tag in ("b", "B"):
        raw = base64.b64decode(body)
        return raw if tag == "b" else bytearray(raw)
    if tag == "F":
        return _FRACTION(int(body[0], 16), int(body[1], 16))
    if tag == "X":
        return _DECIMAL(body)
    if tag in _BUILDERS:
        return _BUILDERS[tag](down(v) for v in body)
    if tag in _REBUILD:
        return _REBUILD[tag]({down(k): down(v) for k, v in body})
    if tag == "E":
        factory = None if body[0] is None else _TYPES[body[0]]
        return collections.defaultdict(factory, {down(k): down(v) for k, v in body[1]})
    if tag == "K":
        return dict.fromkeys(down(v) for v in body).keys()
    if tag == "V":
        return dict(enumerate(down(v) for v in body)).values()
    if tag == "I":
        return {down(k): down(v) for k, v in body}.items()
    if tag == "N":
        name, fields, values = str(body[0]), tuple(str(f) for f in body[1]), body[2]
        if (name, fields) not in _namedtuples:
            _namedtuples[(name, fields)] = _NAMEDTUPLE(name, fields)
        return _namedtuples[(name, fields)](*(down(v) for v in values))
    if tag == "q":
        return _DEQUE(down(v) for v in body)
    if tag == "T" and body in _TYPES:
        return _TYPES[body]
    if tag == "M" and body in sys.stdlib_module_names and body not in _NOT_IMPORTED:
        return importlib.import_module(body)
    if tag == "r" and type(body) is int:
        return handle(body)
    raise ValueError(f"malformed value {str(data)[:80]}")


class Channel:
    """Newline-delimited JSON over a pair of descriptors, with a deadline on every read."""

    def __init__(self, read_fd, write_fd, deadline=None):
        self.read_fd, self.write_fd, self.deadline = read_fd, write_fd, deadline
        self.buffer = b""

    def send(self, message):
        data = json.dumps(message).encode() + b"\n"
        while data:
            data = data[os.write(self.write_fd, data) :]

    def recv(self):
        chunks, size = [self.buffer], len(self.buffer)
        while b"\n" not in chunks[-1]:
            if self.deadline is not None:
                left = self.deadline - time.monotonic()
                if left <= 0 or not select.select([self.read_fd], [], [], left)[0]:
                    raise Lost("timed out")
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                raise Lost(ENDED)
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_MESSAGE:
                raise Lost(f"the program sent an answer over {MAX_MESSAGE >> 20} MB")
        line, self.buffer = b"".join(chunks).split(b"\n", 1)
        try:
            return json.loads(line)
        except (ValueError, RecursionError):
            raise Lost("the program broke the protocol") from None


# ---------------------------------------------------------------- inside the sandbox
def serve(program_path, read_fd, write_fd):
    channel = Channel(read_fd, write_fd)
    refs = []
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        with open(program_path) as f:
            code = compile(f.read(), "<program>", "exec")
        exec(code, namespace)  # noqa: S102 - running the program is the point, inside the sandbox
    except BaseException as e:  # noqa: BLE001 - the program's own failure is the answer
        traceback.print_exc()
        channel.send({"error": f"{type(e).__name__}: {e}"[:300]})
        return
    names = {}
    for name, value in list(namespace.items()):
        if name.startswith("__") or (type(value) is _MODULE and value.__name__ not in sys.stdlib_module_names):
            continue
        names[name] = _handle(value, refs) if callable(value) else _encode_or_handle(value, refs)
    channel.send({"names": names})
    while True:
        try:
            request = channel.recv()
        except Lost:
            return
        try:
            channel.send({"ok": _encode_or_handle(_answer(request, refs), refs)})
        except BaseException as e:  # noqa: BLE001 - every failure of the program's code is reported back
            if isinstance(e, SystemExit | KeyboardInterrupt) or not isinstance(e, Exception):
                channel.send({"raise": ["RuntimeError", f"{type(e).__name__} raised"]})
                continue
            channel.send({"raise": [type(e).__name__, str(e)[:300]]})


def _encode_or_handle(value, refs):
    """Plain data where it can cross (``encode``), else a handle: a value nested deeper than MAX_DEPTH stays inside."""
    try:
        return encode(value, refs)
    except (ValueError, RecursionError):
        return _handle(value, refs)


def _answer(request, refs):
    def handle(i):
        return refs[i]

    target = refs[request["ref"]]
    op = request["op"]
    if op == "call":
        args = decode(request["args"], handle)
        kwargs = decode(request["kwargs"], handle)
        return target(*args, **kwargs)
    if op == "getattr":
        return getattr(target, request["name"])
    if op == "setattr":
        return setattr(target, request["name"], decode(request["key"], handle))
    if op == "getitem":
        return target[decode(request["key"], handle)]
    if op == "contains":
        return decode(request["key"], handle) in target
    if op == "iter":
        return list(target)
    return {"len": len, "bool": bool, "repr": repr, "str": str, "float": float, "int": int}[op](target)


# ---------------------------------------------------------------- outside: the tests
class Remote:
    """A handle to an object that stays in the sandbox."""

    __slots__ = ("_judge", "_ref")

    def __init__(self, ref, judge):
        object.__setattr__(self, "_ref", ref)
        object.__setattr__(self, "_judge", judge)

    def __call__(self, *args, **kwargs):
        return self._judge.ask("call", self, args=list(args), kwargs=kwargs)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self._judge.ask("getattr", self, name=name)

    def __setattr__(self, name, value):
        self._judge.ask("setattr", self, name=name, key=value)

    def __getitem__(self, key):
        return self._judge.ask("getitem", self, key=key)

    def __contains__(self, key):
        return self._judge.ask("contains", self, key=key)

    def __iter__(self):
        return iter(self._judge.ask("iter", self))

    def __len__(self):
        return self._judge.ask("len", self)

    def __bool__(self):
        return self._judge.ask("bool", self)

    def __repr__(self):
        return self._judge.ask("repr", self)

    def __str__(self):
        return self._judge.ask("str", self)

    def __float__(self):
        return self._judge.ask("float", self)

    def __int__(self):
        return self._judge.ask("int", self)

    def __eq__(self, other):
        return other is self or (type(other) is Remote and other._ref == self._ref)

    def __hash__(self):
        return hash(self._ref)


class Judge:
    def __init__(self, channel):
        self.channel = channel
        self.lost = None
        self.remotes = {}

    def handle(self, ref):
        if ref not in self.remotes:
            self.remotes[ref] = Remote(ref, self)
        return self.remotes[ref]

    def ask(self, op, target, **fields):
        if self.lost is not None:
            raise Lost(self.lost)
        for key in ("args", "kwargs", "key"):
            if key in fields:
                fields[key] = encode(fields[key], self._outgoing)
        try:
            self.channel.send({"op": op, "ref": target._ref, **fields})
            answer = self.channel.recv()
            if "raise" in answer:
                name, message = (str(x) for x in answer["raise"][:2])
                if name in _ENDS_ITERATION:
                    raise Lost(f"the program raised {name}, which would end the tests' iteration early")
                kind = getattr(builtins, name, None)
                if not (isinstance(kind, type) and issubclass(kind, Exception)):
                    kind = RuntimeError
                error = kind(f"{message} (raised in the program)")
            else:
                return decode(answer["ok"], self.handle)
        except Lost as e:
            self.lost = str(e)
            raise
        except Exception as e:  # noqa: BLE001 - any answer that cannot be read back is a lost answer
            self.lost = f"the program broke the protocol ({type(e).__name__})"
            raise Lost(self.lost) from None
        raise error

    @staticmethod
    def _outgoing(value):
        if type(value) is Remote:
            return {"r": value._ref}
        raise TypeError(f"a {type(value).__name__} cannot be passed into the sandbox")


def names_of(tree):
    """The names ``tree`` reads, and the names it binds anywhere (assignments, definitions, imports, parameters)."""
    read, bound = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return read, bound


def prompt_definitions(prefix, entry_point):
    """What the prompt itself defines (helpers such as HumanEval/38's ``encode_cyclic``), executed here from the
    ground truth: the tests get these, never the program's versions of them. The entry point is the program's."""
    if not prefix.strip():
        return {}
    scope = {"__name__": "__prompt__", "__builtins__": builtins}
    try:
        exec(compile(prefix, "<prompt>", "exec"), scope)  # noqa: S102 - the ground truth's own code
    except Exception:  # noqa: BLE001 - a prompt that is not a whole program defines nothing usable
        return {}
    return {k: v for k, v in scope.items() if not k.startswith("__") and k != entry_point}


def judge(read_fd, write_fd, timeout_s):
    """Reads ``{"tests", "entry_point"}`` on stdin; prints ``{"passed", "reason"}`` on stdout."""
    verdict_fd = os.dup(1)
    os.dup2(2, 1)  # the tests' own prints must not reach the verdict
    spec = json.loads(sys.stdin.read())
    judge = Judge(Channel(read_fd, write_fd, time.monotonic() + timeout_s))
    passed, reason = False, ""
    try:
        first = judge.channel.recv()
        if "error" in first:
            raise Lost(f"the program failed before the tests: {first['error']}")
        tests = compile(spec["tests"], "<tests>", "exec", ast.PyCF_ONLY_AST)
        entry = spec["entry_point"]
        namespace = {"__name__": "__tests__", "__builtins__": builtins, **prompt_definitions(spec.get("prefix", ""), entry)}
        read, bound = names_of(tests)
        named = {entry, *spec.get("uses", [])} - {""}  # the ground truth's own names for what the tests call
        wanted = (read - bound - set(dir(builtins)) - set(namespace)) | named
        program = first["names"]
        if type(program) is not dict:
            raise Lost("the program broke the protocol (names)")
        for name in sorted(wanted & set(program)):
            try:
                namespace[name] = decode(program[name], judge.handle)
            except Exception as e:  # noqa: BLE001 - a name that cannot be read back is a lost answer
                judge.lost = f"the program broke the protocol ({type(e).__name__})"
                raise Lost(judge.lost) from None
        if entry and entry not in namespace:
            raise NameError(f"the program does not define {entry}")
        exec(compile(tests, "<tests>", "exec"), namespace)  # noqa: S102 - the ground truth's tests
        if entry:
            if "check" not in bound:
                raise NameError("the tests define no check(candidate) to call with the entry point")
            namespace["check"](namespace[entry])
        passed, reason = True, "passed"
    except Lost as e:
        reason = str(e)
    except BaseException as e:  # noqa: BLE001 - a failing test is the verdict
        reason = f"{type(e).__name__}: {e}"[:300]
    if judge.lost is not None:  # an answer was lost even if a test swallowed the error
        passed, reason = False, judge.lost
    os.write(verdict_fd, json.dumps({"passed": passed, "reason": reason}).encode())


if __name__ == "__main__":
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 8 * MAX_DEPTH))  # encode/decode recurse per level
    if sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        judge(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
