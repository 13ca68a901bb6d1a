"""How a released file is named outside its node: one path segment of plain characters.

The name is the one the node's researcher sees (withheld names are already placeholders);
folders are flattened so that nothing a node sends can name a path at the hub or in the
folder `tre hub results` writes.
"""

from __future__ import annotations

import re

# A released file's name at the hub.
FILE_NAME = r"^[A-Za-z0-9._-][A-Za-z0-9._ -]{0,199}$"
_FILE_NAME = re.compile(FILE_NAME)


def file_name_for(path: str) -> str:
    """A released file's name at the hub: one path segment of safe characters (folders
    joined with ``__``), never ``.`` or ``..``."""
    flat = "".join(
        c if c.isascii() and (c.isalnum() or c in "._- ") else "_" for c in path.replace("/", "__")
    )
    flat = flat.strip(" ")[:200] or "file"
    return "_" + flat[1:] if set(flat) <= {"."} else flat


def is_file_name(value: str) -> bool:
    """One safe path segment: the pattern, and not made of dots only (``.``, ``..``)."""
    return bool(_FILE_NAME.match(value)) and not set(value) <= {"."}
