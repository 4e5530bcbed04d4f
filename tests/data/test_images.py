"""Image loading: orientation, mode conversions and refusal of unusable files, against hand-computed pixels."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iconolens.data.images import image_size, load_image, probe_image
from iconolens.errors import BadImageError


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_16bit_rgb(pixels: np.ndarray) -> bytes:
    """A 48-bit RGB PNG built by hand (Pillow cannot write one)."""
    height, width, _ = pixels.shape
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows))
        + _png_chunk(b"IEND", b"")
    )


STORED = np.arange(6, dtype=np.uint8).reshape(2, 3) * 40  # 2 rows x 3 columns, all values distinct


@pytest.mark.parametrize(
    ("orientation", "expected"),
    [
        (1, STORED),
        (2, np.fliplr(STORED)),
        (3, np.rot90(STORED, 2)),
        (6, np.rot90(STORED, -1)),  # stored image must be turned 90 degrees clockwise
        (8, np.rot90(STORED, 1)),  # ... counter-clockwise
    ],
)
def test_exif_orientation_is_applied(tmp_path: Path, write_image, orientation: int, expected: np.ndarray) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = write_image(tmp_path / "o.png", Image.fromarray(STORED).convert("RGB"), exif=exif)
    loaded = np.asarray(load_image(path))
    assert loaded.shape == (*expected.shape, 3)
    for channel in range(3):
        np.testing.assert_array_equal(loaded[..., channel], expected)
    assert image_size(path) == (expected.shape[1], expected.shape[0])


def test_grey_becomes_equal_rgb_channels(tmp_path: Path, write_image) -> None:
    grey = np.array([[0, 17, 200], [255, 3, 99]], dtype=np.uint8)
    loaded = np.asarray(load_image(write_image(tmp_path / "g.png", Image.fromarray(grey, mode="L"))))
    np.testing.assert_array_equal(loaded, np.repeat(grey[..., None], 3, axis=2))


def test_alpha_is_composited_on_white(tmp_path: Path, write_image) -> None:
    rgba = np.array([[[200, 100, 0, 255], [200, 100, 0, 0], [10, 20, 30, 128]]], dtype=np.uint8)
    loaded = np.asarray(load_image(write_image(tmp_path / "a.png", Image.fromarray(rgba, mode="RGBA"))))
    alpha = rgba[..., 3:4] / 255.0
    expected = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
    assert np.abs(loaded.astype(float) - expected).max() <= 1.0


def test_grey_with_alpha_is_composited_on_white(tmp_path: Path, write_image) -> None:
    la = np.array([[[40, 255], [40, 0], [100, 64]]], dtype=np.uint8)
    loaded = np.asarray(load_image(write_image(tmp_path / "la.png", Image.fromarray(la, mode="LA"))))
    alpha = la[..., 1] / 255.0
    expected = la[..., 0] * alpha + 255.0 * (1.0 - alpha)
    for channel in range(3):
        assert np.abs(loaded[..., channel].astype(float) - expected).max() <= 1.0


def test_palette_indices_become_their_colours(tmp_path: Path, write_image) -> None:
    palette = [(250, 0, 0), (0, 128, 0), (7, 8, 9)]
    indices = np.array([[0, 1, 2], [2, 2, 0]], dtype=np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette([v for colour in palette for v in colour] + [0] * (768 - 9))
    loaded = np.asarray(load_image(write_image(tmp_path / "p.png", image)))
    np.testing.assert_array_equal(loaded, np.array(palette, dtype=np.uint8)[indices])


def test_cmyk_uses_the_subtractive_formula(tmp_path: Path, write_image) -> None:
    cmyk = np.array([[[0, 0, 0, 0], [255, 0, 0, 0], [100, 50, 0, 60], [0, 200, 30, 255]]], dtype=np.uint8)
    path = write_image(tmp_path / "c.tif", Image.fromarray(cmyk, mode="CMYK"))
    loaded = np.asarray(load_image(path)).astype(float)
    c, m, y, k = (cmyk[..., i] / 255.0 for i in range(4))
    expected = np.stack([255 * (1 - c) * (1 - k), 255 * (1 - m) * (1 - k), 255 * (1 - y) * (1 - k)], axis=-1)
    assert np.abs(loaded - expected).max() <= 1.0


def test_16_bit_grey_is_scaled_to_8_bits(tmp_path: Path, write_image) -> None:
    levels = np.array([[0, 1, 128], [200, 254, 255]], dtype=np.uint16)
    path = write_image(tmp_path / "g16.png", Image.fromarray(levels * 257))  # k * 257 is k / 255 of full scale
    assert Image.open(path).mode.startswith("I")
    loaded = np.asarray(load_image(path))
    np.testing.assert_array_equal(loaded, np.repeat(levels.astype(np.uint8)[..., None], 3, axis=2))


def test_16_bit_rgb_is_scaled_to_8_bits(tmp_path: Path) -> None:
    levels = np.array([[[0, 10, 255], [128, 7, 64]]], dtype=np.uint16)
    path = tmp_path / "rgb16.png"
    wide = np.minimum(levels.astype(np.int64) * 257 + 100, 65535)  # +100: well under one 8-bit step
    path.write_bytes(_png_16bit_rgb(wide))
    np.testing.assert_array_equal(np.asarray(load_image(path)), levels.astype(np.uint8))


def _assert_one_sentence(error: pytest.ExceptionInfo, path: Path, words: str) -> None:
    message = str(error.value)
    assert message.startswith(str(path))
    assert words in message
    assert "\n" not in message


def test_truncated_jpeg_is_refused_from_its_header(tmp_path: Path, jpeg_bytes) -> None:
    path = tmp_path / "cut.jpg"
    path.write_bytes(jpeg_bytes(64, 48)[:-400])
    with pytest.raises(BadImageError) as error:
        probe_image(path)
    _assert_one_sentence(error, path, "truncated")
    with pytest.raises(BadImageError) as error:
        load_image(path)
    _assert_one_sentence(error, path, "truncated")


def test_data_appended_after_the_end_marker_is_accepted(tmp_path: Path, jpeg_bytes) -> None:
    path = tmp_path / "appended.jpg"
    path.write_bytes(jpeg_bytes(40, 30) + b"maker notes " * 200)  # 2.4 kB after the end marker
    assert image_size(path) == (40, 30)


def test_corrupt_pixel_data_is_refused_when_decoded(tmp_path: Path, write_image) -> None:
    good = write_image(tmp_path / "good.png", np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    data = bytearray(good.read_bytes())
    start = data.find(b"IDAT") + 20
    data[start : start + 40] = bytes(40)
    path = tmp_path / "corrupt.png"
    path.write_bytes(bytes(data))
    with pytest.raises(BadImageError) as error:
        load_image(path)
    _assert_one_sentence(error, path, "corrupt")


def test_garbage_after_a_jpeg_signature_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "garbage.jpg"
    path.write_bytes(b"\xff\xd8\xff" + np.random.default_rng(3).integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(BadImageError) as error:
        probe_image(path)
    assert str(error.value).startswith(str(path))


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(BadImageError) as error:
        probe_image(path)
    _assert_one_sentence(error, path, "empty")


def test_non_image_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("a painting of Saint Peter, 1620\n")
    with pytest.raises(BadImageError) as error:
        load_image(path)
    _assert_one_sentence(error, path, "not an image")


def test_missing_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "absent.jpg"
    with pytest.raises(BadImageError) as error:
        probe_image(path)
    _assert_one_sentence(error, path, "does not exist")


def test_pixel_limit_is_configurable(tmp_path: Path, solid_image) -> None:
    path = solid_image(tmp_path / "big.png", 20, 10)
    assert probe_image(path, max_pixels=200).width == 20  # exactly at the limit: accepted
    with pytest.raises(BadImageError) as error:
        load_image(path, max_pixels=199)
    _assert_one_sentence(error, path, "over the limit of 199")
    with pytest.raises(BadImageError):
        probe_image(path, max_pixels=199)


def test_decompression_bomb_is_refused_from_its_header(tmp_path: Path, solid_image) -> None:
    """A PNG whose header claims 50,000 x 50,000 pixels is refused before anything is decoded."""
    small = solid_image(tmp_path / "small.png", 8, 8).read_bytes()
    header = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0)
    ihdr_end = 8 + 8 + 13 + 4
    bomb = small[:8] + _png_chunk(b"IHDR", header) + small[ihdr_end:]
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb)
    with pytest.raises(BadImageError) as error:
        probe_image(path)  # default limit: 100 million pixels
    _assert_one_sentence(error, path, "2,500,000,000 pixels")
    with pytest.raises(BadImageError):
        load_image(path)


def test_header_probe_does_not_decode(tmp_path: Path, jpeg_bytes, write_image, monkeypatch) -> None:
    jpeg = tmp_path / "ok.jpg"
    jpeg.write_bytes(jpeg_bytes(40, 30))
    exif = Image.Exif()
    exif[0x0112] = 6
    png = write_image(tmp_path / "turned.png", np.zeros((30, 40, 3), dtype=np.uint8), exif=exif)
    plain_png = write_image(tmp_path / "plain.png", np.zeros((30, 40, 3), dtype=np.uint8))

    decoded: list[str] = []

    def record(self: Image.Image) -> None:
        decoded.append(str(self.filename))

    monkeypatch.setattr(Image.Image, "load", record)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", record)
    header = probe_image(jpeg)
    assert (header.width, header.height, header.format) == (40, 30, "JPEG")
    assert image_size(png) == (30, 40)  # quarter turn: width and height swap
    assert image_size(plain_png) == (40, 30)
    assert decoded == []
