"""Red team round 19: the researcher's own image and code, and what a job sees of the host.

Each case failed before its fix:

* an OCI archive whose symbolic links chain (``a -> .``, ``a/b -> ..``, ``b/x``) made
  skopeo, extracting it as the control plane's user, write ``x`` above its extraction
  folder (``/var/tmp``), and further links reach any path of the host; each link's own
  target had stayed inside the archive;
* bubblewrap's init, whose environment a job reads at /proc/1/environ, was started with
  bash's ``_`` (the control plane's Python interpreter, a host path) and ``SHLVL``.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import sys
import tarfile
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.images.conftest import require_tools, store_is_empty
from tests.images.imagekit import add_file, add_special, crafted_oci_archive, layer_tar, sha
from tre.config import Settings
from tre.images.errors import ImageRejected
from tre.images.store import ImageStore

ESCAPED = f"tre-redteam19-{uuid.uuid4().hex}"  # what an escaping member would be called on the host


def _with_members(tmp_path: Path, add: Callable[[tarfile.TarFile], None]) -> Path:
    """A well-formed OCI archive (one gzip layer) with ``add``'s members written first."""
    layer = layer_tar(lambda t: add_file(t, "hello.txt", b"hello\n"))
    good = crafted_oci_archive(tmp_path / "good.tar", [gzip.compress(layer, mtime=0)], [sha(layer)])
    evil = tmp_path / "evil.tar"
    with tarfile.open(good) as src, tarfile.open(evil, "w") as dst:
        add(dst)
        for m in src.getmembers():
            dst.addfile(m, src.extractfile(m))
    return evil


def _link(tar: tarfile.TarFile, name: str, target: str) -> None:
    add_special(tar, name, tarfile.SYMTYPE, target)


OUTER_ARCHIVES: dict[str, tuple[Callable[[tarfile.TarFile], None], str]] = {
    # a -> . makes a/b the archive's b, pointing at the extraction folder's parent
    "chained links climb out": (
        lambda t: (_link(t, "a", "."), _link(t, "a/b", ".."), add_file(t, f"b/{ESCAPED}", b"x")),
        "lies below the symbolic link 'a'",
    ),
    "a link to the archive's root": (lambda t: _link(t, "top", "."), "not a file of the archive"),
    "a link to a folder": (lambda t: _link(t, "b", "blobs/sha256"), "not a file of the archive"),
    "a member below a link declared after it": (
        lambda t: (add_file(t, "d/x", b"x"), _link(t, "d", "oci-layout")),
        "lies below the symbolic link 'd'",
    ),
    "a link through a link": (
        lambda t: (_link(t, "l", "oci-layout"), _link(t, "m", "l/x")),
        "lies below the symbolic link 'l'",
    ),
    # tarfile reads the last of two, skopeo (Go) the first
    "a member twice": (lambda t: add_file(t, "index.json", b'{"manifests": []}'), "appears twice"),
}


@pytest.fixture
def store(settings: Settings) -> ImageStore:
    require_tools()
    return ImageStore(settings)


@pytest.mark.parametrize("case", sorted(OUTER_ARCHIVES))
def test_links_in_the_outer_archive_never_reach_outside_it(
    case: str, store: ImageStore, tmp_path: Path
) -> None:
    add, words = OUTER_ARCHIVES[case]
    escaped = Path("/var/tmp", ESCAPED)  # noqa: S108 - where skopeo's extraction would have put it
    try:
        with pytest.raises(ImageRejected) as info:
            store.import_path(_with_members(tmp_path, add))
        assert words in str(info.value) and "\n" not in str(info.value)
        assert store_is_empty(store)
    finally:
        was_written = escaped.exists()
        escaped.unlink(missing_ok=True)
    assert not was_written


def test_a_docker_archive_layer_linked_to_another_is_still_accepted(
    store: ImageStore, tmp_path: Path
) -> None:
    """The one link image archives hold: old `docker save` named a shared layer by a link."""
    from tre.images.archive import inspect_archive

    archive = tmp_path / "linked.tar"
    layer = layer_tar(lambda t: add_file(t, "hello.txt", b"hello\n"))
    with tarfile.open(archive, "w") as tar:
        config = (
            b'{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["'
            + sha(layer).encode()
            + b'","'
            + sha(layer).encode()
            + b'"]}}'
        )
        add_file(tar, "c.json", config)
        add_file(tar, "one/layer.tar", layer)
        _link(tar, "two/layer.tar", "../one/layer.tar")
        add_file(
            tar,
            "manifest.json",
            b'[{"Config":"c.json","RepoTags":["x/y:1"],"Layers":["one/layer.tar","two/layer.tar"]}]',
        )
    assert inspect_archive(archive, store.limits).format == "docker-archive"


@pytest.fixture(scope="module")
def image_job(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str], list[str]]:
    """One real job in a busybox image whose config's User is ``²`` (a digit to
    ``str.isdigit``, not to ``int``): its end, bubblewrap's init's environment as the job
    reads it at /proc/1/environ, and ``id -u -g``."""
    if shutil.which("bwrap") is None or not Path("/bin/busybox").is_file():
        pytest.skip("bubblewrap or busybox-static is not installed (scripts/install-system-deps)")
    from tests.sandbox.conftest import Sandbox
    from tests.sandbox.test_sandbox_image import job_user_ids, make_busybox_rootfs
    from tre.executors.base import ImageConfig
    from tre.executors.local import LocalExecutor

    try:
        job_user_ids()
    except KeyError:
        pytest.skip("the job user tre-job does not exist (scripts/install-system-deps)")
    tmp = tmp_path_factory.mktemp("image-job")
    sandbox = Sandbox(tmp, LocalExecutor(images_dir=tmp / "images"))
    script = "tr '\\0' '\\n' < /proc/1/environ | sed 's/^/ENV /'; echo ID $(id -u) $(id -g)"
    try:
        run = sandbox.run(
            "",
            command=["sh", "-c", script],
            rootfs=make_busybox_rootfs(tmp / "rootfs"),
            image_config=ImageConfig(env={"PATH": "/bin"}, user="\u00b2:\u00b2"),
        )
    except Exception as exc:  # noqa: BLE001 - before round 19: ValueError from int('²')
        return f"not run: {type(exc).__name__}: {exc}", {}, []
    lines = [ln.removeprefix("ENV ") for ln in run.log.splitlines() if ln.startswith("ENV ")]
    ids = [ln.split()[1:] for ln in run.log.splitlines() if ln.startswith("ID ")]
    return run.result.state, dict(ln.partition("=")[::2] for ln in lines), ids[0] if ids else []


def test_bubblewraps_init_holds_no_host_path_in_its_environment(
    image_job: tuple[str, dict[str, str], list[str]],
) -> None:
    """Only PATH and LANG, as SECURITY.md says: bash's ``_`` named the control plane's own
    interpreter (``/root/.pyenv/versions/3.11.7/bin/python3`` here), a host path."""
    state, init_environ, _ = image_job
    assert state == "succeeded", state
    assert set(init_environ) == {"PATH", "LANG"}, init_environ
    host_paths = {sys.executable, os.path.realpath(sys.executable), sys.prefix}
    assert not [v for v in init_environ.values() if any(p in v for p in host_paths)]


def test_an_image_user_in_other_digits_is_a_name(image_job: tuple[str, dict[str, str], list[str]]) -> None:
    """A User that is not ASCII digits is a name: the sandbox uid, as for ``nobody``."""
    from tre.executors.base import ImageConfig
    from tre.executors.bwrap import image_identity

    state, _, ids = image_job
    assert state == "succeeded", state
    assert ids == ["10001", "10001"]
    for user in ("\uff11\uff10\uff10\uff10\uff11", "\u0661\u0660\u0660", "7:\u00b9", "\u2460"):
        assert image_identity(ImageConfig(user=user), 10001, 10001) in ((10001, 10001), (7, 10001))
    assert image_identity(ImageConfig(user="1000:1000"), 10001, 10001) == (1000, 1000)


_SWAPS: dict[str, Callable[[str], None]] = {}  # path -> what happens to it just before it is opened


def _before_open(event: str, args: tuple[object, ...]) -> None:
    if event == "open" and args and isinstance(args[0], str) and args[0] in _SWAPS:
        _SWAPS.pop(args[0])(args[0])


def _to_link(target: Path) -> Callable[[str], None]:
    def swap(path: str) -> None:
        os.unlink(path)
        os.symlink(target, path)

    return swap


def _cut(path: str) -> None:
    os.truncate(path, 3)


def _touched(path: str) -> None:
    with open(path, "ab") as fh:  # the hook is not called again: _SWAPS no longer names it
        fh.write(b" more")


FOLDER_CHANGES = {
    "a file swapped for a link to a secret": "link",
    "a file cut shorter": "cut",
    "a file written to": "touch",
}


@pytest.mark.parametrize("case", sorted(FOLDER_CHANGES))
def test_a_code_folder_that_changes_while_packed_is_packed_as_checked_or_refused(
    case: str, tmp_path: Path
) -> None:
    """The file is replaced in the instant between the packer's look at it (lstat) and its
    open, by an audit hook on that open: deterministic, and a real swap on a real folder."""
    from tre.code.archive import CodeLimits, CodeRefused, pack_folder

    secret = tmp_path / "credentials.json"
    secret.write_text('{"token": "SECRET-TOKEN-rt19", "expires": "2027-01-01T00:00:00Z"}')
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "analysis.py").write_text("print('hello world, a longer file')\n")
    kind = FOLDER_CHANGES[case]
    swap = {"link": _to_link(secret), "cut": _cut, "touch": _touched}[kind]
    if not getattr(sys, "_tre_rt19_hook", False):
        sys.addaudithook(_before_open)  # cannot be removed: it acts only on paths in _SWAPS
        sys._tre_rt19_hook = True  # type: ignore[attr-defined]
    _SWAPS[str(folder / "analysis.py")] = swap
    packed = io.BytesIO()
    try:
        with pytest.raises(CodeRefused) as info:
            pack_folder(folder, packed, CodeLimits())
    finally:
        _SWAPS.clear()
    assert "'analysis.py' changed while the code folder was packed" in str(info.value)
    assert b"SECRET-TOKEN" not in gzip_contents(packed)


def gzip_contents(packed: io.BytesIO) -> bytes:
    try:
        return gzip.decompress(packed.getvalue())
    except (OSError, EOFError):
        return b""


@pytest.mark.parametrize("value", ["\u00b2", "\u00b9\u2070", "\u2460"])
def test_a_tes_backend_parameter_in_other_digits_is_refused_with_a_reason(value: str) -> None:
    """The same ``isdigit``/``int`` gap in GA4GH TES's ``backend_parameters`` (a researcher's
    JSON): ``{"gpu": "²"}`` raised ValueError, a 500, instead of the 400 with a reason."""
    from tre.tes.models import TesTask
    from tre.tes.submission import TaskRefused, plan_task

    task = TesTask.model_validate(
        {
            "executors": [{"image": "registry.tre.local/x@sha256:" + "a" * 64, "command": ["true"]}],
            "resources": {"backend_parameters": {"gpu": value}},
            "tags": {"Project": "lung"},
        }
    )
    with pytest.raises(TaskRefused, match="backend parameter 'gpu' must be a whole number"):
        plan_task(task)


def _deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


def _oci_index(index: bytes) -> Callable[[tarfile.TarFile], None]:
    return lambda t: (
        add_file(t, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
        add_file(t, "index.json", index),
    )


def _docker_manifest(manifest: bytes) -> Callable[[tarfile.TarFile], None]:
    return lambda t: (
        add_file(t, "c.json", b'{"rootfs": {"diff_ids": []}}'),
        add_file(t, "manifest.json", manifest),
    )


HOSTILE_DOCUMENTS: dict[str, Callable[[Path], Path]] = {  # and a word of the refusal below
    # Go's JSON reader (skopeo) takes 10,000 levels, Python's stops near 1,000: RecursionError
    "a deeply nested config, read after skopeo": lambda tmp: crafted_oci_archive(
        tmp / "deep-config.tar",
        [gzip.compress(layer_tar(lambda t: add_file(t, "a", b"a")), mtime=0)],
        [sha(layer_tar(lambda t: add_file(t, "a", b"a")))],
        edit_config=lambda raw: raw[:-1] + b', "x": ' + _deep(5000) + b"}",
    ),
    "a deeply nested manifest.json": lambda tmp: _plain_archive(tmp, _docker_manifest(_deep(50_000))),
    "a deeply nested index.json": lambda tmp: _plain_archive(tmp, _oci_index(_deep(50_000))),
    # AttributeError: annotations were read as an object whatever they were
    "an index whose annotations are a list": lambda tmp: _plain_archive(
        tmp, _oci_index(b'{"manifests": [{"annotations": ["x"], "digest": "sha256:' + b"0" * 64 + b'"}]}')
    ),
    # KeyError: RepoTags were read as a list whatever they were
    "RepoTags that are an object": lambda tmp: _plain_archive(
        tmp, _docker_manifest(b'[{"Config": "c.json", "Layers": [], "RepoTags": {"a": 1}}]')
    ),
}


def _plain_archive(tmp: Path, add: Callable[[tarfile.TarFile], None]) -> Path:
    dest = tmp / "documents.tar"
    with tarfile.open(dest, "w") as tar:
        add(tar)
    return dest


@pytest.mark.parametrize("case", sorted(HOSTILE_DOCUMENTS))
def test_an_archives_json_of_any_shape_is_a_refusal_not_a_crash(
    case: str, store: ImageStore, tmp_path: Path
) -> None:
    with pytest.raises(ImageRejected) as info:
        store.import_path(HOSTILE_DOCUMENTS[case](tmp_path))
    assert "\n" not in str(info.value)
    assert ("nested too deeply" in str(info.value)) == ("deeply" in case), str(info.value)
    assert store_is_empty(store)


def _created(value: str) -> Callable[[bytes], bytes]:
    return lambda raw: raw[:-1] + b', "created": "' + value.encode() + b'"}'


@pytest.mark.parametrize(
    ("claimed", "kept"),
    [
        ("0001-01-01T00:00:00+23:59", ""),  # before year 1 in UTC: OverflowError in `tre image list`
        ("9999-12-31T23:59:59-23:59", ""),  # after 9999
        ("2024-05-01T10:00:00.123456789+02:00", "2024-05-01T08:00:00Z"),  # Go's nanoseconds
    ],
)
def test_an_images_created_claim_is_kept_only_as_a_time_every_reader_can_show(
    claimed: str, kept: str, store: ImageStore, tmp_path: Path
) -> None:
    from tre.cli.output import utc_time

    layer = layer_tar(lambda t: add_file(t, "a", b"a"))
    archive = crafted_oci_archive(
        tmp_path / "created.tar", [gzip.compress(layer, mtime=0)], [sha(layer)], edit_config=_created(claimed)
    )
    result = store.import_path(archive)
    assert result.created == kept
    assert utc_time(result.created) == ("-" if not kept else "2024-05-01 08:00 UTC")
    # a row stored before the fix still lists: shown as the text it is
    assert utc_time(claimed).startswith(("0001", "9999", "2024-05-01 08:00"))
