"""The image size a compressed frame declares, read from its codestream header before decoding.

Why: a decoder allocates what the codestream's header declares, not what the DICOM header
says. A JPEG 2000 frame of a few kilobytes can declare 60000 x 60000 pixels (one tile): the
decoders then allocate gigabytes (1.8 GB of resident memory and 14 s of CPU for a 20000 x
20000 declaration in a 3 KB file, measured) and a larger one gets the whole cohort job killed
for memory. Rows and Columns are checked against the job's memory before anything is read
(`tre.kernels.memory`); a frame that declares another size than Rows x Columns is refused
here, before any decoder sees it.

Parsed: JPEG 2000 (the SIZ marker segment, also inside a JP2 wrapper) and the JPEG family
(baseline, extended, lossless, JPEG-LS: the SOFn marker segment). A codestream whose header
cannot be found is left to the decoders, which refuse it (RLE has no size of its own: its
decoder writes into Rows x Columns).
"""

from __future__ import annotations

from tre.kernels.errors import UndecodableError

_J2K_SOC_SIZ = b"\xff\x4f\xff\x51"
# SOFn of JPEG (C0-CF except DHT C4, JPG C8 and DAC CC) and SOF55 of JPEG-LS (F7).
_SOF = frozenset([*range(0xC0, 0xD0), 0xF7]) - {0xC4, 0xC8, 0xCC}
_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])  # TEM, RSTn: no length field
_SEARCH = 4096  # how far into a frame its header may start (a JP2 wrapper's boxes come first)


def declared_size(frame: bytes) -> tuple[int, int] | None:
    """(rows, columns) the frame's codestream header declares, or None when there is none."""
    head = bytes(frame[:_SEARCH])
    if head.startswith(b"\xff\xd8"):
        return _jpeg_size(frame)
    at = head.find(_J2K_SOC_SIZ)
    if at < 0 or len(frame) < at + 24:
        return None
    siz = at + 4  # Lsiz(2) Rsiz(2) Xsiz(4) Ysiz(4) XOsiz(4) YOsiz(4)
    xsiz, ysiz, xo, yo = (int.from_bytes(frame[siz + 4 + 4 * i : siz + 8 + 4 * i], "big") for i in range(4))
    return (max(0, ysiz - yo), max(0, xsiz - xo))


def _jpeg_size(frame: bytes) -> tuple[int, int] | None:
    """The SOFn segment's (lines, samples per line) of a JPEG or JPEG-LS stream."""
    i = 2
    end = min(len(frame), 1 << 20)  # markers before the frame header are small
    while i + 4 <= end:
        if frame[i] != 0xFF:
            return None
        marker = frame[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _STANDALONE:
            i += 2
            continue
        length = int.from_bytes(frame[i + 2 : i + 4], "big")
        if marker in _SOF:
            if i + 9 > len(frame):
                return None
            return (
                int.from_bytes(frame[i + 5 : i + 7], "big"),
                int.from_bytes(frame[i + 7 : i + 9], "big"),
            )
        if marker == 0xDA or length < 2:  # scan data before any frame header: not ours to judge
            return None
        i += 2 + length
    return None


def check_frame_size(
    frame: bytes, rows: int, columns: int, where: object, tsyntax: object | None = None
) -> None:
    """Refuse a frame whose codestream declares another size than Rows x Columns, before a
    decoder allocates what it declares. (A JPEG frame may declare 0 lines and give them in
    a later DNL marker: that is not larger, so it passes.) ``tsyntax`` names the transfer
    syntax in the refusal, as every refusal of undecodable pixel data does."""
    size = declared_size(frame)
    if size is None:
        return
    r, c = size
    if (r, c) != (rows, columns) and not (r == 0 and c == columns):
        syntax = ""
        if tsyntax:
            syntax = f" in transfer syntax {getattr(tsyntax, 'name', '') or 'unknown'} ({tsyntax})"
        raise UndecodableError(
            f"{where}: pixel data{syntax} cannot be decoded: the compressed frame declares "
            f"{r}x{c} pixels but the header says {rows}x{columns}; refused before decoding "
            "(a corrupt or hostile codestream)"
        )
