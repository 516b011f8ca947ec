"""Checking an LMDB data file (`data.mdb`) before LMDB uses it, reading it without LMDB.

LMDB trusts its file: a page it touches beyond the end of a truncated file raises SIGBUS, and a
zeroed or garbage page reached by a cursor moving to the next leaf fails an assertion inside
LMDB (SIGABRT); either kills the process. So the store checks the file first:
`data_file_problem` reads both meta pages and refuses a file shorter than the pages they name
(before LMDB maps it), and `tree_problem` walks the B-trees of the snapshot a read transaction
holds, checking the header of every branch and leaf page (its page number and type), which is
what a zeroed or overwritten page breaks. Leaf contents and overflow pages are not read (that
would cost a full read of the file); the full offline check is `lmdb.verify`.

LMDB's file format (64-bit little-endian builds, which is all covfuzz runs on): pages 0 and 1
are meta pages. Each starts with a 16-byte page header (page number: 8 bytes, pad: 2, flags: 2,
lower/upper: 2 + 2; a meta page has flag P_META) followed by the meta record:

    offset  0  magic        uint32  0xBEEFC0DE
    offset  4  version      uint32  1
    offset  8  address      8 bytes
    offset 16  map size     uint64
    offset 24  free-list db 48 bytes; its first uint32 is the page size
    offset 72  main db      48 bytes
    offset 120 last page    uint64  the last page number used
    offset 128 txn id       uint64  the transaction that wrote it (the higher one is current)

The current meta page is the valid one with the higher txn id; the file must hold its pages
0 .. last page. A database record (`MDB_db`, 48 bytes) holds its root page number at offset 40
(all ones: empty). Every other page starts with the same 16-byte header; a branch page (flag
0x01) or leaf page (0x02) holds, after it, 2-byte offsets of its nodes (`lower` = where they
end). A node is: 2 + 2 bytes (a leaf's data size, or the low 32 bits of a branch's child page
number), 2 bytes flags (a branch: the child's bits 32..47), 2 bytes key size, the key, then a
leaf's data; the main database's leaves hold one database record a named database
(node flag 0x02).
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from dataclasses import dataclass

MAGIC = 0xBEEFC0DE
VERSION = 1
P_META = 0x08
PAGE_HEADER = 16
META_BYTES = 136  # the meta record up to and including the txn id
PAGE_SIZES = tuple(1 << n for n in range(9, 17))  # 512 .. 65536
MAX_FILE = 1 << 40  # the store's largest map (corpus.lmdb_env.MAX_MAP_SIZE)
P_BRANCH, P_LEAF, P_LEAF2 = 0x01, 0x02, 0x20
F_SUBDATA = 0x02
NO_PAGE = (1 << 64) - 1
MAX_DEPTH = 32  # LMDB's cursor stack
DB_RECORD = 48

_HEADER = struct.Struct("<QHH")  # page number, pad, flags
_META = struct.Struct("<IIQQI")  # magic, version, address, map size, page size (free db's pad)
_TAIL = struct.Struct("<QQ")  # last page, txn id


@dataclass(frozen=True)
class MetaPage:
    index: int      # 0 or 1
    page_size: int
    map_size: int
    last_page: int
    txn_id: int

    @property
    def needed_bytes(self) -> int:
        """The file size this meta page needs: its pages 0 .. last_page."""
        return (self.last_page + 1) * self.page_size


def parse_meta(page: bytes, index: int) -> MetaPage | str:
    """The meta page at `index` parsed from its first bytes, or what is wrong with it."""
    if len(page) < PAGE_HEADER + META_BYTES:
        return "missing (the file is too short)"
    pgno, _, flags = _HEADER.unpack_from(page, 0)
    magic, version, _, map_size, page_size = _META.unpack_from(page, PAGE_HEADER)
    last, txn = _TAIL.unpack_from(page, PAGE_HEADER + 120)
    if magic != MAGIC:
        return f"bad magic 0x{magic:08x}"
    if version != VERSION:
        return f"LMDB data version {version}, not {VERSION}"
    if pgno != index or not flags & P_META:
        return "not marked as a meta page"
    if page_size not in PAGE_SIZES:
        return f"impossible page size {page_size}"
    if not 1 <= last < MAX_FILE // page_size:
        return f"impossible last page number {last}"
    return MetaPage(index, page_size, map_size, last, txn)


def open_data_file(path: str) -> int:
    """A read-only fd of the regular file `path`; never follows a symlink or opens a FIFO or
    device (OSError otherwise)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", path)
    return fd


def read_metas(fd: int) -> list[MetaPage | str]:
    """Both meta pages of the data file open as `fd` (a MetaPage, or what is wrong with it).
    Meta page 1 is looked for at the page size of meta page 0, else at every possible size."""
    first = parse_meta(os.pread(fd, PAGE_HEADER + META_BYTES, 0), 0)
    sizes = (first.page_size,) if isinstance(first, MetaPage) else PAGE_SIZES
    second: MetaPage | str = "missing"
    for size in sizes:
        second = parse_meta(os.pread(fd, PAGE_HEADER + META_BYTES, size), 1)
        if isinstance(second, MetaPage) and second.page_size == size:
            break
        if not isinstance(first, MetaPage):
            second = "not found at any page size"
    return [first, second]


def current(metas: list[MetaPage | str]) -> MetaPage | None:
    """The meta page LMDB would use: the valid one with the higher txn id."""
    valid = [m for m in metas if isinstance(m, MetaPage)]
    return max(valid, key=lambda m: m.txn_id) if valid else None


def data_file_problem(path: str) -> str | None:
    """None when `path` (a `data.mdb`) has both meta pages and every page they name; else what
    is wrong, in a few words."""
    try:
        fd = open_data_file(path)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    try:
        size = os.fstat(fd).st_size
        metas = read_metas(fd)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    finally:
        os.close(fd)
    if size == 0:
        return "is empty"
    for index, meta in enumerate(metas):
        if not isinstance(meta, MetaPage):
            return f"meta page {index} is damaged ({meta})"
    if metas[0].page_size != metas[1].page_size:
        return "its two meta pages disagree on the page size"
    need = current(metas).needed_bytes
    if size < need:
        return f"is truncated ({size} bytes; its header names {need})"
    return None


# ----------------------------------------------------------------------------- page walk


@dataclass(frozen=True)
class _Node:
    key: bytes
    lo: int     # a leaf's data size (low 16 bits), a branch's child page (bits 0..15)
    hi: int     # bits 16..31 of the same
    flags: int  # a leaf node's flags, a branch's child page bits 32..47
    data: int   # where a leaf node's data starts

    @property
    def child(self) -> int:
        return self.lo | self.hi << 16 | self.flags << 32


class _Walk:
    """The page-header walk of one snapshot (see the module docstring)."""

    def __init__(self, fd: int, meta: MetaPage):
        self.fd, self.meta, self.psize = fd, meta, meta.page_size
        self.seen: set[int] = set()

    def page(self, pgno: int, n: int) -> bytes:
        return os.pread(self.fd, n, pgno * self.psize)

    def header(self, pgno: int, data: bytes) -> str | None:
        """None when `data` starts with the header of branch or leaf page `pgno`."""
        if len(data) < PAGE_HEADER:
            return f"page {pgno} is missing"
        number, _, flags, lower, upper = struct.unpack_from("<QHHHH", data, 0)
        if number != pgno or flags not in (P_BRANCH, P_LEAF, P_LEAF | P_LEAF2):
            return f"page {pgno} is damaged (it reads as page {number} with flags 0x{flags:x})"
        if not PAGE_HEADER <= lower <= upper <= self.psize:
            return f"page {pgno} is damaged (bad free-space bounds)"
        return None

    def nodes(self, pgno: int, data: bytes) -> list[_Node] | str:
        """Every node of the whole branch or leaf page `data`, or what is wrong."""
        lower = struct.unpack_from("<H", data, 12)[0]
        out = []
        for i in range((lower - PAGE_HEADER) // 2):
            off = struct.unpack_from("<H", data, PAGE_HEADER + 2 * i)[0]
            if not PAGE_HEADER <= off <= self.psize - 8:
                return f"page {pgno} is damaged (node {i} lies outside it)"
            lo, hi, flags, ksize = struct.unpack_from("<HHHH", data, off)
            if off + 8 + ksize > self.psize:
                return f"page {pgno} is damaged (the key of node {i} lies outside it)"
            out.append(_Node(data[off + 8:off + 8 + ksize], lo, hi, flags, off + 8 + ksize))
        return out

    def tree(self, root: int, leaves: list | None = None) -> str | None:
        """Check every branch and leaf page of the tree at `root`, level by level; with
        `leaves`, append each leaf page read whole (pgno, data)."""
        level = [] if root == NO_PAGE else [root]
        for _ in range(MAX_DEPTH):
            if not level:
                return None
            below = []
            for pgno in level:
                if not 2 <= pgno <= self.meta.last_page or pgno in self.seen:
                    return f"page number {pgno} is out of range or reached twice"
                self.seen.add(pgno)
                data = self.page(pgno, self.psize if leaves is not None else PAGE_HEADER)
                why = self.header(pgno, data)
                if why:
                    return why
                flags = struct.unpack_from("<H", data, 10)[0]
                if flags == P_BRANCH:
                    if leaves is None:
                        data = self.page(pgno, self.psize)
                    nodes = self.nodes(pgno, data)
                    if isinstance(nodes, str):
                        return nodes
                    below += [node.child for node in nodes]
                elif leaves is not None:
                    leaves.append((pgno, data))
            level = below
        return f"a tree deeper than {MAX_DEPTH} levels"

    def named_roots(self, leaves: list) -> dict[bytes, int] | str:
        """The root page of every named database, from the main database's leaves."""
        roots = {}
        for pgno, data in leaves:
            nodes = self.nodes(pgno, data)
            if isinstance(nodes, str):
                return nodes
            for node in nodes:
                if node.flags & F_SUBDATA:
                    if node.lo | node.hi << 16 != DB_RECORD or node.data + DB_RECORD > self.psize:
                        return f"page {pgno} is damaged (a bad database record)"
                    roots[node.key] = struct.unpack_from("<Q", data, node.data + 40)[0]
        return roots


def tree_problem(fd: int, meta: MetaPage) -> str | None:
    """None when every branch and leaf page of the free list, the main database and every named
    database of the snapshot `meta` has a sound header; else the first problem found. The
    caller holds a read transaction on that snapshot, so its pages cannot be reused meanwhile."""
    walk = _Walk(fd, meta)
    record = os.pread(fd, PAGE_HEADER + 24 + 2 * DB_RECORD, meta.index * meta.page_size)
    free_root, main_root = (struct.unpack_from("<Q", record, PAGE_HEADER + 24 + off)[0]
                            for off in (40, DB_RECORD + 40))
    why = walk.tree(free_root)
    if why:
        return f"the free-page list: {why}"
    leaves: list = []
    why = walk.tree(main_root, leaves)
    roots = walk.named_roots(leaves) if not why else why
    if isinstance(roots, str):
        return f"the main database: {roots}"
    for name, root in roots.items():
        why = walk.tree(root)
        if why:
            return f"database {name.decode('ascii', 'replace')!r}: {why}"
    return None
