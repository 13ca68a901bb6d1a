"""Recognising data smuggled as text: base64 (wrapped or spaced), hex dumps, escaped bytes.

A job that read an image can print it in any encoding. One long base64 run is easy to see;
the same bytes wrapped at 76 columns, spaced into groups, or printed as a hex dump are a run
of short lines, each innocent alone. This module measures, per line, how much of it looks
like encoded payload (`payload_chars`); the log screen then judges lines together (see
`egress_review.logscreen`), so a file cut into lines is still one file. It also offers the
decoded forms of short encoded fragments (`decoded_fragments`), so an identifier printed as
hex or base64 can be found by the identifier matcher.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import html
import re
import string
import sys
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal

# Tokens are split on white space, the punctuation dumps and lists put between values, and
# dots (file extensions: "<base64>.bin").
_SPLIT = re.compile(r"[\s,;:|()\[\]{}\"'`<>.]+")
_B64_TOKEN = re.compile(r"[A-Za-z0-9+/_=-]+")
_HEX_TOKEN = re.compile(r"(?:0[xX])?[0-9a-fA-F]{2,}")
_STRIPPED_B64 = re.compile(r"[A-Za-z0-9+/_=-]+")
_LONG_RUN = re.compile(r"[A-Za-z0-9+/_=-]{12,}")
# A token this long, from the base64 alphabet and mixing classes, is payload, not a word.
MIN_TOKEN_CHARS = 12
# Hex dumps: this many fixed-width hex groups on one line.
MIN_HEX_GROUPS = 8


def random_looking(token: str) -> bool:
    """Whether a base64-alphabet token mixes character classes the way encoded bytes do
    (words are letters of one case after the first; numbers are digits only)."""
    has_digit = any(c.isdigit() for c in token)
    has_alpha = any(c.isalpha() for c in token)
    if has_digit and has_alpha:
        return True
    if "+" in token:
        return True
    # "/" alone is a path ("figures/montage"), not base64.
    body = token[1:]
    return any(c.islower() for c in body) and any(c.isupper() for c in body)


# A number as a row prints it: "12", "-3", "0.25", "1,024" is two numbers (a list's comma).
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])")


def without_steps(line: str) -> str:
    """``line`` with the numbers that the two before them predict blanked: a row counting in
    steps (``0 3 6 9 12``, ``0.25 0.50 0.75``, ``10.0 20.0 30.0``), doubling (``64 128 256``)
    or repeating (``0 0 0``). Such a row is a table of epochs, steps or sizes printed in a
    line; its numbers after the first two carry nothing, so they are no hex-dump groups
    (random bytes almost never run on in steps, and a row that does says nothing)."""
    numbers = list(_NUMBER.finditer(line))
    if len(numbers) < 3:
        return line
    values = [Decimal(m.group(0)) for m in numbers]
    out = list(line)
    for i in range(2, len(values)):
        x, y, z = values[i - 2], values[i - 1], values[i]
        if z - y == y - x or (x and y and y * y == x * z):
            start, end = numbers[i].span()
            out[start:end] = " " * (end - start)
    return "".join(out)


def _hex_dump_chars(line: str, tokens: list[str]) -> int:
    """Hex digits in a line that looks like a hex dump: at least MIN_HEX_GROUPS hex groups of
    one width (xxd, hexdump -C, od -x, bytes.hex(' '), 0x.. lists). Numbers the row's own
    steps predict (`without_steps`) are not groups."""
    if sum(1 for t in tokens if _HEX_TOKEN.fullmatch(t)) < MIN_HEX_GROUPS:
        return 0
    tokens = [t for t in _SPLIT.split(without_steps(line)) if t]
    groups = [t[2:] if t[:2] in ("0x", "0X") else t for t in tokens if _HEX_TOKEN.fullmatch(t)]
    if len(groups) < MIN_HEX_GROUPS:
        return 0
    width, count = Counter(len(g) for g in groups).most_common(1)[0]
    if count < MIN_HEX_GROUPS or count * 2 < len(tokens):
        return 0
    return sum(len(g) for g in groups)


_LOWER_RUN = re.compile(r"[a-z]+")
# A compound name's words: lower-case runs this long on average (random base64 has ~1.7).
_NAME_MEAN_LOWER_RUN = 2.5


def compound_name(token: str) -> bool:
    """Whether a letters-and-digits token reads as words run together in CamelCase
    ("RuntimeError", "ResNet50EncoderDecoderBlock", "BatchNorm2d"): mostly lower case, in
    runs of word length (at most one of a single letter, besides "2d"-like suffixes).
    Encoded bytes switch case every couple of characters; a 12-character base64 run reads
    as such a name ~6 % of the time, a 40-character one ~0.3 % (measured on random bytes)."""
    if not token.isalnum() or not token.isascii() or token.islower() or token.isupper():
        return False  # (one case: hex, or a word the other rules already read as one)
    runs = list(_LOWER_RUN.finditer(token))
    lower = sum(len(m.group(0)) for m in runs)
    if not runs or lower * 2 < len(token) or lower < _NAME_MEAN_LOWER_RUN * len(runs):
        return False
    single = sum(1 for m in runs if len(m.group(0)) == 1 and not token[m.start() - 1 : m.start()].isdigit())
    return single <= 1


# A class name with acronyms and versions (round 18: `'ConvNeXtV2Blk3D'`, `'SwinUNETRV2Head'`,
# `'SegResNetVAE'` counted as base64, seven of 65 lines of a model summary withheld): an
# optional lower-case prefix ("nn"), then capitalised words, runs of capitals, and short
# numbers with an optional "d"/"D" ("3D"), nothing else. Each unit is possessive (a run of
# capitals with the lower case after it, a short number): written with alternatives that could
# each take a run of capitals, a token of twenty capitals and a lower-case letter after a digit
# took a second to refuse, twice as long for every capital more.
_ACRONYM_NAME = re.compile(r"(?:[a-z]{2,3})?(?:[A-Z]++[a-z]*+|[0-9]{1,3}+(?:[dD](?![a-z]))?+)++")
_TITLE_WORD = re.compile(r"[A-Z][a-z]+")
MAX_NAME_DIGITS = 4
# Capitalised words of two letters ("Ne", "Xt" of "NeXt") a name may hold.
MAX_SHORT_WORDS = 2


def acronym_name(token: str) -> bool:
    """Whether a letters-and-digits token reads as a class name with acronyms or versions
    (`_ACRONYM_NAME`): four digits at most, at most two capitalised words of two letters, and
    capitalised words of three letters or more holding half its letters or more. A random
    base64 run that `compound_name` does not already take passes ~4.6 % of the time at 12
    characters (together 10.3 %, from 5.7 %), at 16 2.7 % (7.6 %, from 4.9 %), at 24 0.9 %
    (2.7 %), at 40 under 0.1 % (measured on random base64; a payload is judged by all its
    tokens, so a tenth fewer counted characters at worst)."""
    if not token.isascii() or not token.isalnum() or token.islower() or token.isupper():
        return False
    if not _ACRONYM_NAME.fullmatch(token) or sum(c.isdigit() for c in token) > MAX_NAME_DIGITS:
        return False
    words = _TITLE_WORD.findall(token)
    letters = sum(c.isalpha() for c in token)
    short = sum(1 for w in words if len(w) == 2)
    return short <= MAX_SHORT_WORDS and 2 * sum(len(w) for w in words if len(w) > 2) >= letters


def class_name(token: str) -> bool:
    """A CamelCase name (`compound_name`) or one with acronyms and versions (`acronym_name`)."""
    return compound_name(token) or acronym_name(token)


# A content hash as tools print one (git's short and full ids, docker's layer ids, md5, sha1,
# sha224/256, pip's wheel-cache directory): one case of hex, letters and digits both.
_DIGEST = re.compile(r"[0-9a-f]{7,64}|[0-9A-F]{7,64}")


def hex_digest(piece: str) -> bool:
    """Whether ``piece`` is a content hash: hex of one case, 7 to 64 digits, mixing digits and
    letters (a word of hex letters, "decade", or a number is not)."""
    return bool(_DIGEST.fullmatch(piece)) and not piece.isdecimal() and not piece.isalpha()


# What joins a name's pieces ("weights-epoch-10", "a/b_c", "filename=dicom2nifti")
_NAME_SEPARATORS = re.compile(r"[-_=/]")


def _encoded_token(token: str) -> bool:
    """A base64 token, not a name joined with separators ("weights-epoch-10", "a/b_c",
    "filename=dicom2nifti") or in CamelCase (`class_name`): its longest piece between -,
    _, / and = (base64 pads with = only at its end) is long and mixes character classes."""
    if len(token) < MIN_TOKEN_CHARS:
        return False
    longest = max(_NAME_SEPARATORS.split(token), key=len)
    return len(longest) >= MIN_TOKEN_CHARS and random_looking(longest) and not class_name(longest)


def _digest_token(token: str) -> bool:
    """A token whose only long piece (between ``-_/=:``) is a content hash: "sha256=<hex>",
    ".../wheels/ab/cd/ef/<hex>", "<hex>"."""
    pieces = [p for p in re.split(r"[-_/=:]", token) if len(p) >= MIN_TOKEN_CHARS]
    return len(pieces) == 1 and hex_digest(pieces[0])


def _labelled_digest(tokens: list[str], encoded: list[str]) -> bool:
    """Whether a line's only encoded-looking token is one content hash beside words that are
    not (a label: "commit", "Digest: sha256:", "Stored in directory:", a file name). Tools
    print one hash a line this way; a hex file cut into lines is hex alone on each line, and a
    hex dump has many groups a line: both still count."""
    return (
        len(encoded) == 1
        and _digest_token(encoded[0])
        and any(t is not encoded[0] and any(c.isalpha() for c in t) for t in tokens)
    )


def payload_chars(line: str) -> int:
    """How many characters of ``line`` look like encoded data (0 for ordinary text)."""
    if len(line) < 16:
        return 0
    tokens = [t for t in _SPLIT.split(line) if t]
    words = line.split()
    encoded: list[str] | None = None
    spaced = 0
    stripped = "".join(words)
    if len(stripped) >= 16 and _STRIPPED_B64.fullmatch(stripped) and random_looking(stripped):
        # A line that is nothing but base64 (wrapped, or spaced into groups): its groups count,
        # but not its words and numbers ("steps 0 100 200 300", "Successfully built
        # lungmask"), nor a label's one content hash ("commit <hex>").
        if len(words) > 1:
            encoded = _encoded_tokens(tokens)
        if encoded is None or not _labelled_digest(tokens, encoded):
            spaced = sum(len(t) for t in words if not _plain(t))
            if spaced == len(stripped):
                return spaced
    dense = sum(len(t) for t in words if dense_token(t))
    if len(tokens) < MIN_HEX_GROUPS and not _LONG_RUN.search(line):
        return max(spaced, dense)
    hex_chars = _hex_dump_chars(line, tokens)
    encoded = _encoded_tokens(tokens) if encoded is None else encoded
    b64_chars = 0 if _labelled_digest(tokens, encoded) else sum(len(t) for t in encoded)
    return max(spaced, hex_chars, b64_chars, dense)


def _plain(token: str) -> bool:
    """Whether a base64-alphabet token is a word or a number, not a group of encoded bytes:
    digits only, letters of one case or capitalised, a CamelCase name, or such pieces joined
    with - _ = / ("radiomics-utils"). A random base64 group of four is one ~7 % of the time."""
    pieces = _NAME_SEPARATORS.split(token)
    return all(
        p.isdecimal()
        or (p.isascii() and p.isalpha() and (p.islower() or p.isupper() or p.istitle()))
        or _digits_in_a_word(p)
        or compound_name(p)
        for p in pieces
    )


def _digits_in_a_word(piece: str) -> bool:
    """A lower-case word with a digit or two in it ("dicom2nifti", "nnunetv2", "resnet50"):
    hex of that length holds more digits (16 random hex digits hold two or fewer 1 in 10^5)."""
    digits = sum(c.isdigit() for c in piece)
    return piece.isascii() and piece.isalnum() and piece.islower() and 0 < digits <= 2 < len(piece) - digits


def _encoded_tokens(tokens: list[str]) -> list[str]:
    return [t for t in tokens if _B64_TOKEN.fullmatch(t) and _encoded_token(t)]


# Encodings whose alphabets hold punctuation (ascii85, base85/Z85, base91, uuencode) are cut
# into tokens by `_SPLIT` and slip past the base64 test, so a whole CT slice printed with
# `base64.a85encode` was shown. Their tokens are recognised by shape instead: long,
# unbroken printable ASCII, mostly letters, with punctuation, switching between classes
# (lower, upper, digit, punctuation) at almost every character, with no word in it. Paths,
# dotted names, time stamps, UUIDs, numbers and prose switch rarely, hold words or few letters.
MIN_DENSE_CHARS = 16
_DENSE_MAX_WORD = 5  # a longer run of letters of one case is a word, not payload
_DENSE_MAX_NUMBER = 2  # a longer run of digits is a number
_DENSE_SWITCHES = 0.45  # share of neighbouring characters of different classes
_HEX_AND_PUNCTUATION = frozenset("0123456789abcdefABCDEF") | frozenset(string.punctuation)


# A token's runs of one class: lower case, upper case, digits, anything else (punctuation).
_CLASS_RUNS = re.compile(r"[a-z]+|[A-Z]+|[0-9]+|[^a-zA-Z0-9]+")
_DENSE_CANDIDATE = re.compile(rf"[!-~]{{{MIN_DENSE_CHARS},}}")


_ENCLOSING = string.punctuation


def dense_token(token: str) -> bool:
    """Whether a white-space-free token looks like bytes in an 85/91-symbol encoding.
    Punctuation only around it (quotes, brackets, a trailing colon) is not judged: a quoted
    CamelCase class name (``'ResNet3DBlockV2',``) switches class as often as ascii85, but its
    only punctuation is the quoting; an 85-symbol alphabet puts punctuation throughout."""
    token = token.strip(_ENCLOSING)
    if len(token) < MIN_DENSE_CHARS or not _DENSE_CANDIDATE.fullmatch(token):
        return False
    if _HEX_AND_PUNCTUATION.issuperset(token):  # hex, UUIDs, dates: the hex rules judge them
        return False
    runs = _CLASS_RUNS.findall(token)
    kinds = {_run_class(r) for r in runs}
    # Punctuation and letters of both cases: the 85/91-symbol alphabets hold all three, so a
    # long token of them lacks one only by chance (~1 % at 16 characters, less the longer it
    # is); a package's file name ("torch-2.1.0-cp311-none-any.whl", pip prints them) is one
    # case of letters, digits and separators.
    if not {1, 2, 3} <= kinds:
        return False
    # A word, or a number of three or more digits (a measurement, a count): encoded bytes
    # hold one now and then, text holds them throughout.
    words = sum(
        1
        for r in runs
        if (r[0].isalpha() and len(r) > _DENSE_MAX_WORD) or (r[0].isdigit() and len(r) > _DENSE_MAX_NUMBER)
    )
    switches = len(runs) - 1
    return words <= len(token) // 30 and switches >= _DENSE_SWITCHES * (len(token) - 1)


def _run_class(run: str) -> int:
    c = run[0]
    return 0 if c.isdigit() else 1 if c.islower() else 2 if c.isupper() else 3


def longest_run(line: str) -> int:
    """Length of the longest unbroken run of an encoding's alphabet in ``line``: base64/hex,
    or an 85/91-symbol one (`dense_token`)."""
    b64 = max((_run_length(m) for m in re.findall(r"[A-Za-z0-9+/]+", line)), default=0)
    dense = max((len(t) for t in line.split() if dense_token(t)), default=0)
    return max(b64, dense)


def _run_length(run: str) -> int:
    """A run's length; a path ending in a content hash (pip's wheel cache,
    ``.../wheels/ab/cd/ef/<hex>``) is measured as its two parts, the directories and the hash,
    each still judged by the same limit."""
    head, _, last = run.rpartition("/")
    if head and hex_digest(last):
        return max(len(head), len(last))
    return len(run)


_HEX_RUN = re.compile(r"(?:(?:0[xX])?[0-9a-fA-F]{2}[\s:,.\-]?){3,}")
_ESCAPED = re.compile(r"(?:\\x[0-9a-fA-F]{2}){3,}")
_B64_RUN = re.compile(r"[A-Za-z0-9+/_-]{6,}={0,2}")
MAX_FRAGMENTS = 4096


# Text escapes a language or a web page would print: %41, \\101, \\u0041, &#65; / &#x41;, and
# bytes as decimal numbers ("67 111 109"); base32 and the 85-symbol encodings of short runs.
_PERCENT = re.compile(r"(?:%[0-9a-fA-F]{2}){3,}")
# quoted-printable (RFC 2045): "=48=4F=53"
_QUOTED_PRINTABLE = re.compile(r"(?:=[0-9A-F]{2}){3,}")
# uuencode: a length character (M for 45 bytes) and 4 characters per 3 bytes, from ` ` to `` ` ``
_UU_LINE = re.compile(r"[!-M][ -`]{4,84}")
_OCTAL = re.compile(r"(?:\\[0-3][0-7]{2}){3,}")
_UNICODE_ESCAPE = re.compile(r"(?:\\u[0-9a-fA-F]{4}|\\U[0-9a-fA-F]{8}){3,}")
_ENTITIES = re.compile(r"(?:&#(?:[0-9]{1,7}|[xX][0-9a-fA-F]{1,6});?){3,}")
_DECIMAL_BYTES = re.compile(r"(?<![\d.])(?:\d{2,3}[\s,;]{1,3}){2,}\d{2,3}(?![\d.])")
_NUMERIC_TOKEN = re.compile(r"[0-9.,;:+\-eE]+")
_B32_RUN = re.compile(r"[A-Z2-7]{8,}={0,6}")
_B85_TOKEN = re.compile(r"[!-u]{5,}|[0-9A-Za-z!#$%&()*+\-;<=>?@^_`{|}~]{5,}")


def _escaped_text(line: str) -> Iterator[str]:
    """What the text escapes and decimal byte lists in ``line`` spell (latin-1 for bytes)."""
    if "%" in line:
        for match in _PERCENT.finditer(line):
            yield bytes.fromhex(match.group(0).replace("%", "")).decode("latin-1")
    if "\\" in line:
        for match in _OCTAL.finditer(line):
            yield bytes(int(o, 8) for o in match.group(0).split("\\")[1:]).decode("latin-1")
        for match in _UNICODE_ESCAPE.finditer(line):
            codes = re.findall(r"\\[uU]([0-9a-fA-F]+)", match.group(0))
            yield "".join(chr(c) for c in (int(h, 16) for h in codes) if c <= sys.maxunicode)
    if "&#" in line:
        for match in _ENTITIES.finditer(line):
            yield html.unescape(match.group(0))
    if "=" in line:
        for match in _QUOTED_PRINTABLE.finditer(line):
            yield bytes.fromhex(match.group(0).replace("=", "")).decode("latin-1")
    stripped = line.rstrip()  # the spaces a zero-valued tail encodes to may be lost: pad them
    if _UU_LINE.fullmatch(stripped):
        want = (ord(stripped[0]) - 32 + 2) // 3 * 4 + 1
        if want - 4 < len(stripped) <= want:
            with contextlib.suppress(binascii.Error):
                yield binascii.a2b_uu(stripped.ljust(want)).decode("latin-1")
    for match in _DECIMAL_BYTES.finditer(line):
        values = [int(v) for v in re.findall(r"\d+", match.group(0))]
        if all(v < 256 for v in values):
            yield bytes(values).decode("latin-1")
    for match in _B32_RUN.finditer(line):
        run = match.group(0).rstrip("=")
        for skip in range(8):  # the fragment may start anywhere in a longer encoding
            part = run[skip:]
            if len(part) < 8:
                break
            # a whole encoding ends in a partial group (its "=" padding stripped above): pad it;
            # a fragment cut anywhere is trimmed to whole groups
            for piece in (part + "=" * (-len(part) % 8), part[: len(part) - len(part) % 8]):
                try:
                    yield base64.b32decode(piece).decode("latin-1")
                    break
                except (binascii.Error, ValueError):
                    continue
    for token in line.split():
        # Tokens of the base64 alphabet alone are decoded as base64 (`decoded_fragments`).
        if len(token) < 7 or len(token) > 400 or _B64_TOKEN.fullmatch(token):
            continue
        if not _B85_TOKEN.fullmatch(token) or _NUMERIC_TOKEN.fullmatch(token) or not random_looking(token):
            continue  # a row of numbers ("12,0.518,-3e-2") is no ascii85 of any text
        for decode in (base64.a85decode, base64.b85decode):
            with contextlib.suppress(ValueError):
                yield decode(token.encode()).decode("latin-1")


def decoded_fragments(line: str) -> Iterator[str]:
    """Text that short hex, ``\\xNN``, base64, base58, base32, ascii85/base85 fragments and text
    escapes (``%41``, ``\\101``, ``\\u0041``, ``&#65;``, decimal bytes) of ``line`` decode to
    (latin-1, so any bytes decode), for the identifier matcher to look at."""
    yield from _escaped_text(line)
    produced = 0
    for match in _HEX_RUN.finditer(line):
        digits = re.sub(r"0[xX]|[\s:,.\-]", "", match.group(0))
        if len(digits) % 2:
            digits = digits[:-1]
        try:
            yield bytes.fromhex(digits).decode("latin-1")
        except ValueError:
            pass
        produced += 1
    for match in _ESCAPED.finditer(line):
        yield bytes.fromhex(match.group(0).replace("\\x", "")).decode("latin-1")
        produced += 1
    for match in _B64_RUN.finditer(line):
        if produced >= MAX_FRAGMENTS:
            return
        token = match.group(0)
        if not (token.endswith("=") or random_looking(token)):
            continue  # an ordinary word: decoding it would only make noise
        produced += 1
        run = token.rstrip("=").replace("-", "+").replace("_", "/")
        # The fragment may start anywhere in a longer encoding: try every alignment.
        for skip in range(4):
            part = run[skip:]
            part = part[: len(part) - len(part) % 4] if len(part) % 4 == 1 else part
            try:
                yield base64.b64decode(part + "=" * (-len(part) % 4)).decode("latin-1")
            except (binascii.Error, ValueError):
                continue
        if _B58_TOKEN.fullmatch(token):
            yield _base58(token)


# Base58 (Bitcoin's alphabet: no 0, O, I, l, + or /), round 22: a name in it passed; a
# token this long at most is read (a big number's conversion is quadratic in its length).
_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_TOKEN = re.compile(r"[1-9A-HJ-NP-Za-km-z]{6,200}")


def _base58(token: str) -> str:
    """The bytes a base58 token encodes (latin-1), its leading "1"s as zero bytes."""
    value = 0
    for char in token:
        value = value * 58 + _B58_ALPHABET.index(char)
    zeros = len(token) - len(token.lstrip("1"))
    return ("\x00" * zeros) + value.to_bytes((value.bit_length() + 7) // 8, "big").decode("latin-1")
