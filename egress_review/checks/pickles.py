"""Reading a pickle's opcodes without ever unpickling it.

Loading a pickle runs whatever callables it imports (``os.system`` in a "results.txt"). The
opcode stream says which callables those are: GLOBAL/INST carry ``module name`` inline and
STACK_GLOBAL takes the two strings pushed before it. ``pickletools.genops`` walks the stream
without executing anything, so imports are listed and judged against an allowlist.
"""

from __future__ import annotations

import fnmatch
import pickletools
from dataclasses import dataclass, field

_STRING_OPS = frozenset(
    {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING", "SHORT_BINSTRING"}
)
_IMPORT_OPS = frozenset({"GLOBAL", "INST"})
_CALL_OPS = frozenset({"REDUCE", "OBJ", "NEWOBJ", "NEWOBJ_EX", "BUILD", "INST"})


@dataclass
class PickleScan:
    """What a pickle would do when loaded: its imports, calls, size in opcodes and strings."""

    ok: bool
    protocol: int = 0
    imports: list[str] = field(default_factory=list)
    calls: int = 0
    opcodes: int = 0
    strings: list[str] = field(default_factory=list)
    numbers: list[float] = field(default_factory=list)
    keyed: dict[str, float] = field(default_factory=dict)
    error: str = ""


def scan_pickle(data: bytes, max_strings: int = 20000) -> PickleScan:
    """Walk the opcodes; ``ok`` only when the stream parses to a STOP at its very end."""
    scan = PickleScan(ok=False)
    recent: list[str] = []
    last_was_string = False
    end = 0
    try:
        for op, arg, pos in pickletools.genops(data):
            scan.opcodes += 1
            name = op.name
            if name == "PROTO" and isinstance(arg, int):
                scan.protocol = arg
            if name in _STRING_OPS and isinstance(arg, str | bytes):
                text = arg.decode("latin-1") if isinstance(arg, bytes) else arg
                recent = [*recent[-1:], text]
                if len(scan.strings) < max_strings:
                    scan.strings.append(text)
            elif name in ("MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT"):
                pass  # memoising does not consume the pushed strings
            elif name in _IMPORT_OPS and isinstance(arg, str):
                scan.imports.append(arg.replace(" ", ".", 1))
            elif name == "STACK_GLOBAL":
                scan.imports.append(".".join(recent[-2:]) if len(recent) == 2 else "<unknown>.<unknown>")
            elif name in ("BININT", "BININT1", "BININT2", "INT", "LONG", "LONG1", "BINFLOAT", "FLOAT"):
                if isinstance(arg, int | float) and len(scan.numbers) < max_strings:
                    scan.numbers.append(float(arg))
                    if last_was_string and recent:
                        scan.keyed.setdefault(recent[-1], float(arg))  # {"min_samples_leaf": 1}
            if name not in ("MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT"):
                last_was_string = name in _STRING_OPS
            if name in _CALL_OPS:
                scan.calls += 1
            if name == "STOP":
                end = (pos or 0) + 1
                break
    except (ValueError, TypeError, EOFError, KeyError, IndexError, UnicodeDecodeError) as exc:
        scan.error = str(exc)[:200]
        return scan
    scan.ok = end > 0 and not data[end:].strip(b"\r\n") and scan.opcodes >= 2
    return scan


def parses_as_pickle(data: bytes) -> bool:
    """Whether ``data`` is one complete pickle (checked by parsing, never by loading)."""
    return scan_pickle(data, max_strings=0).ok


def unsafe_imports(imports: list[str], allowed: list[str]) -> list[str]:
    """Imports that match no allowlist glob (each listed once, in order)."""
    out = [i for i in imports if not any(fnmatch.fnmatchcase(i, g) for g in allowed)]
    return list(dict.fromkeys(out))
