"""Domain ``message_decoder``: pure string tools, no data tables (TOOLS_SPEC.md section 1).

The functions below are shipped verbatim to the sandbox. Their quirks are deliberate and
documented in the spec: ``reverse_string`` and ``string_length`` take a parameter named
``s`` (keyword calls with ``string=`` fail, as upstream), the hex decoder is really UTF-8,
and ``minimum_value([3, 1])`` returns the list because it is the only positional argument.
"""

from __future__ import annotations

import builtins as _m3_builtins

from ._build import BUILTINS_IMPORT, assemble


def convert_hex_to_ascii(hex_string):
    """Decode hex (any case, spaces between bytes allowed) to text, as UTF-8."""
    return bytes.fromhex(str(hex_string)).decode("utf-8")


def reverse_string(s):
    """Return the argument reversed."""
    return s[::-1]


def caesar_decode(message, shift):
    """Shift letters back by ``shift`` (wrapping within A-Z / a-z); keep other characters."""
    shift = int(shift)
    decoded = []
    for char in message:
        if char.isupper():
            decoded.append(chr((ord(char) - shift - 65) % 26 + 65))
        elif char.islower():
            decoded.append(chr((ord(char) - shift - 97) % 26 + 97))
        else:
            decoded.append(char)
    return "".join(decoded)


def string_length(s):
    """Return the length of the argument."""
    return len(s)


def minimum_value(*args):
    """Return the smallest of the positional arguments."""
    return _m3_builtins.min(args)


def maximum_value(*args):
    """Return the largest of the positional arguments."""
    return _m3_builtins.max(args)


def build_sources(data: dict[str, object]) -> dict[str, str]:
    """Tool name -> self-contained source. ``data`` is unused: this domain has no tables."""
    del data
    plain = (convert_hex_to_ascii, reverse_string, caesar_decode, string_length)
    sources = {func.__name__: assemble(tool=func) for func in plain}
    for func in (minimum_value, maximum_value):
        sources[func.__name__] = assemble(preamble=[BUILTINS_IMPORT], tool=func)
    return sources
