"""Output writers: gzip-compatible, hashed while written, atomic, graceful without isal."""

from __future__ import annotations

import gzip
import hashlib
import resource
import signal
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tre.kernels import writers


def volume() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    img = rng.standard_normal((7, 9, 11)).astype(np.float32)
    aff = np.diag([-0.8, -0.8, 2.0, 1.0])
    return img, aff


def check_nifti_gz(path: Path, img: np.ndarray, aff: np.ndarray) -> None:
    raw = gzip.decompress(path.read_bytes())  # plain gzip can read it
    assert raw[:4] == (348).to_bytes(4, "little")  # a NIfTI-1 header
    loaded = nib.load(path)
    assert np.array_equal(np.asarray(loaded.dataobj).transpose(2, 1, 0), img)
    assert np.allclose(loaded.affine, aff)


def test_nii_gz_is_gzip_hashed_and_atomic(tmp_path: Path) -> None:
    img, aff = volume()
    w = writers.write_volume(tmp_path, "s", img, aff, "nii.gz", threads=2)
    path = tmp_path / "s.nii.gz"
    assert w.name == "s.nii.gz" and w.bytes == path.stat().st_size
    assert w.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    check_nifti_gz(path, img, aff)
    assert [p.name for p in tmp_path.iterdir()] == ["s.nii.gz"]


def test_without_isal_and_zlib_ng_falls_back_to_gzip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("isal", "isal.igzip_threaded", "zlib_ng", "zlib_ng.gzip_ng_threaded"):
        monkeypatch.setitem(sys.modules, name, None)  # imports of them now fail for real
    assert writers.gzip_backend() == "gzip"
    note = writers.format_note("nii.gz")
    assert note is not None and "\n" not in note and "slower gzip" in note
    img, aff = volume()
    w = writers.write_volume(tmp_path, "s", img, aff, "nii.gz")
    assert w.sha256 == hashlib.sha256((tmp_path / "s.nii.gz").read_bytes()).hexdigest()
    check_nifti_gz(tmp_path / "s.nii.gz", img, aff)
    assert "gzip, level 1" in writers.compressor_name("nii.gz")


@pytest.mark.parametrize("fmt", ["nii", "nii.gz", "zarr"])
def test_failed_write_leaves_nothing(tmp_path: Path, fmt: str) -> None:
    """A write that fails half-way (file size limit: a real EFBIG from the kernel) leaves no
    file, not even the temporary one: a resumed job can never mistake it for an output."""
    if fmt == "zarr":
        pytest.importorskip("zarr")
    img = np.random.default_rng(3).standard_normal((40, 64, 64)).astype(np.float32)  # 640 KB
    aff = np.eye(4)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, hard))
    try:
        with pytest.raises(OSError):
            writers.write_volume(tmp_path, "s", img, aff, fmt)  # type: ignore[arg-type]
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", ["nii", "nii.gz"])
@pytest.mark.parametrize("layout", ["c-contiguous", "strided view"])
def test_direct_write_gives_nibabels_bytes(tmp_path: Path, fmt: str, layout: str) -> None:
    """The header comes from nibabel and the voxels straight from the array's memory: the
    file holds exactly what ``nibabel.save`` writes (also for a non-contiguous input)."""
    img, aff = volume()
    if layout == "strided view":
        img = np.ascontiguousarray(np.concatenate([img, img], axis=2))[:, :, ::2]
        assert not img.flags.c_contiguous
    writers.write_volume(tmp_path, "s", img, aff, fmt, threads=2)  # type: ignore[arg-type]
    reference = tmp_path / "ref.nii"
    nifti = nib.Nifti1Image(np.ascontiguousarray(img).transpose(2, 1, 0), aff)
    nifti.set_qform(aff, code=1)
    nifti.set_sform(aff, code=1)
    nifti.header.set_xyzt_units("mm")
    nib.save(nifti, reference)
    written = (tmp_path / f"s.{fmt}").read_bytes()
    if fmt == "nii.gz":
        written = gzip.decompress(written)
    assert written == reference.read_bytes()


@pytest.mark.parametrize("fmt", ["nii", "nii.gz"])
def test_outputs_larger_than_the_writeback_step_are_whole_and_hashed(tmp_path: Path, fmt: str) -> None:
    """Write-back is started every WRITEBACK_STEP bytes: the file and its hash stay whole."""
    rng = np.random.default_rng(5)
    image = rng.standard_normal((40, 256, 256)).astype(np.float32)  # 10.5 MB: > one step
    assert image.nbytes > writers.WRITEBACK_STEP
    written = writers.write_volume(tmp_path, "big", image, np.eye(4), fmt, 2)  # type: ignore[arg-type]
    path = tmp_path / written.name
    assert written.bytes == path.stat().st_size
    assert written.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    back = np.asarray(nib.load(str(path)).dataobj).transpose(2, 1, 0)
    assert back.tobytes() == image.tobytes()


def _zarr_reference(path: Path, img: np.ndarray, chunks: tuple[int, int, int]) -> None:
    """The same array written by zarr's own ZipStore, the codec of tre.kernels.zarr_zip."""
    import zarr
    from zarr.codecs import BloscCodec

    from tre.kernels.zarr_zip import SHUFFLE_NAMES, ZARR_CODEC

    c = ZARR_CODEC
    store = zarr.storage.ZipStore(str(path), mode="w")
    arr = zarr.create_array(
        store=store,
        shape=img.shape,
        chunks=chunks,
        dtype="float32",
        fill_value=0.0,
        compressors=BloscCodec(
            cname=c["cname"], clevel=c["clevel"], shuffle=SHUFFLE_NAMES[c["shuffle"]], typesize=4
        ),
        attributes={"k": [1, 2]},
    )
    arr[...] = img
    store.close()


def test_zarr_zip_reads_as_zarrs_own_and_is_reproducible(tmp_path: Path) -> None:
    """Chunks compressed on threads and stored in a ZIP by tre.kernels.zarr_zip: zarr reads the
    same metadata and values as from its own ZipStore writing (edge chunks included), the
    entries are stored, not deflated again, and the bytes do not depend on the thread count."""
    zarr = pytest.importorskip("zarr")
    import zipfile

    from tre.kernels.zarr_zip import write_zarr_zip

    img = np.random.default_rng(4).standard_normal((9, 10, 13)).astype(np.float32)
    img[:4, :4, :4] = 0.0  # a chunk of fill values only: zarr itself skips it, tre stores it
    chunks = (4, 4, 4)
    files = []
    for threads in (1, 3):
        path = tmp_path / f"t{threads}.zarr.zip"
        with path.open("wb") as fh:
            write_zarr_zip(fh, img, {"k": [1, 2]}, threads=threads, chunks=chunks)
        files.append(path.read_bytes())
    assert files[0] == files[1]
    _zarr_reference(tmp_path / "ref.zarr.zip", img, chunks)
    mine = zarr.storage.ZipStore(str(tmp_path / "t3.zarr.zip"), mode="r")
    ref = zarr.storage.ZipStore(str(tmp_path / "ref.zarr.zip"), mode="r")
    a, b = zarr.open_array(mine, mode="r"), zarr.open_array(ref, mode="r")
    assert a.metadata.to_dict() == b.metadata.to_dict()
    assert np.array_equal(a[...], img) and np.array_equal(b[...], img)
    assert np.array_equal(a[3:7, 2:9, 5:13], img[3:7, 2:9, 5:13])
    mine.close()
    ref.close()
    with zipfile.ZipFile(tmp_path / "t3.zarr.zip") as zf:
        infos = zf.infolist()
    assert infos[0].filename == "zarr.json"
    assert len(infos) == 1 + 3 * 3 * 4  # every chunk of the 3 x 3 x 4 grid
    assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)


def test_zarr_output_is_hashed_while_written(tmp_path: Path) -> None:
    pytest.importorskip("zarr")
    img, aff = volume()
    w = writers.write_volume(tmp_path, "s", img, aff, "zarr", threads=2)
    path = tmp_path / "s.zarr.zip"
    assert w.name == "s.zarr.zip" and w.bytes == path.stat().st_size
    assert w.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    (tmp_path / "b").mkdir()
    again = writers.write_volume(tmp_path / "b", "s", img, aff, "zarr", threads=1)
    assert again.sha256 == w.sha256  # the file depends on the data only
    assert "lz4" in writers.compressor_name("zarr")
