"""IDX reading and writing: round trips, the real files, and every kind of broken header."""

import gzip
import struct

import numpy as np
import pytest

from numlp.data.idx import IDXError, idx_bytes, read_idx, write_idx


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip_keeps_values_dtype_and_shape(tmp_path, dtype, suffix):
    array = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, array)


def test_reads_the_real_mnist_test_files_with_their_official_hashes(mnist_path):
    images, sha = read_idx(mnist_path / "t10k-images-idx3-ubyte.gz", with_sha256=True)
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert sha == "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
    labels = read_idx(mnist_path / "t10k-labels-idx1-ubyte.gz")
    assert labels[:5].tolist() == [7, 2, 1, 0, 4]


def test_writer_output_is_byte_identical_to_the_official_file(mnist_path, tmp_path):
    labels = read_idx(mnist_path / "t10k-labels-idx1-ubyte.gz")
    official = gzip.decompress((mnist_path / "t10k-labels-idx1-ubyte.gz").read_bytes())
    assert idx_bytes(labels) == official


def raw(tmp_path, payload, name="bad.idx"):
    path = tmp_path / name
    path.write_bytes(payload)
    return path


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"", "too short"),
        (b"\x00\x00", "too short"),
        (b"\x01\x02\x08\x01" + struct.pack(">I", 1) + b"\x00", "bad magic"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "type code 0x07"),
        (b"\x00\x00\x08\x00", "zero dimensions"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 1), "header truncated"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 10) + b"\x00" * 5, "the file has 13 bytes"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 2) + b"\x00" * 5, "the file has 13 bytes"),
    ],
)
def test_malformed_files_are_refused_with_the_reason(tmp_path, payload, message):
    with pytest.raises(IDXError, match=message):
        read_idx(raw(tmp_path, payload))


def test_a_header_claiming_terabytes_is_refused_before_allocating(tmp_path):
    header = b"\x00\x00\x0e\x03" + struct.pack(">III", 100_000, 100_000, 100_000)
    with pytest.raises(IDXError, match="8,000,000,000,000,016 bytes"):
        read_idx(raw(tmp_path, header + b"\x00" * 64))
    gz = raw(tmp_path, gzip.compress(header + b"\x00" * 64), "huge.gz")
    with pytest.raises(IDXError, match="more than a"):
        read_idx(gz)


def test_a_truncated_gzip_is_refused(tmp_path, mnist_path):
    whole = (mnist_path / "t10k-labels-idx1-ubyte.gz").read_bytes()
    with pytest.raises(IDXError, match="truncated|damaged|trailer"):
        read_idx(raw(tmp_path, whole[: len(whole) // 2], "cut.gz"))


def test_a_gzip_with_flipped_bytes_is_refused(tmp_path, mnist_path):
    data = bytearray((mnist_path / "t10k-labels-idx1-ubyte.gz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(IDXError):
        read_idx(raw(tmp_path, bytes(data), "flipped.gz"))


def test_arrays_idx_cannot_hold_are_refused():
    with pytest.raises(ValueError, match="cannot store dtype"):
        idx_bytes(np.zeros(3, dtype=np.int64))
