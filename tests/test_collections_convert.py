"""exporter.collections.convert on real files made here with astropy, Pillow and numpy.

No services: conversion is pure file-in, bytes-out; the worker tests of the collections
family cover it running inside a batch.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from exporter.collections.convert import Converted, Refused, convert

LIMIT = 1_000_000  # Zooniverse's subject image limit, 1,000 KB


def decoded(result: Converted) -> Image.Image:
    """The output decoded by Pillow, after checking it is what it claims to be."""
    assert len(result.data) <= LIMIT
    image = Image.open(io.BytesIO(result.data))
    image.load()
    expected = {"png": ("PNG", "image/png"), "jpg": ("JPEG", "image/jpeg")}[result.extension]
    assert (image.format, result.content_type) == expected
    assert image.size == (result.width, result.height)
    return image


def sky(shape=(512, 640), seed=1) -> np.ndarray:
    """A float32 sky: noise around 1000 counts and a few bright stars."""
    rng = np.random.default_rng(seed)
    data = rng.normal(1000.0, 20.0, shape).astype(np.float32)
    for y, x in rng.integers(20, min(shape) - 20, (12, 2)):
        data[y - 2 : y + 3, x - 2 : x + 3] += 5000.0
    return data


def test_fits_float32_with_nans_becomes_grey_png_with_its_header_metadata(tmp_path):
    data = sky()
    data[100:140, 200:260] = np.nan  # a masked region
    data[300, 300] = np.inf
    data[301, 301] = -np.inf
    data[0:8, :] = 30000.0  # the FITS bottom rows, bright
    header = fits.Header()
    header["OBJECT"] = "NGC 1300"
    header["RA"] = 49.9208
    header["DEC"] = "-19:24:41"
    header["DATE-OBS"] = "2026-11-30T03:12:45"
    header["FILTER"] = "r"
    header["EXPTIME"] = 30.0
    header["TELESCOP"] = "Rubin"
    header["INSTRUME"] = "LSSTCam"
    path = tmp_path / "galaxy.fits"
    fits.PrimaryHDU(data, header=header).writeto(path)

    result = convert(path)

    assert (result.extension, result.width, result.height) == ("png", 640, 512)
    image = decoded(result)
    assert image.mode == "L"
    pixels = np.asarray(image)
    # NaN and inf pixels are masked to the minimum; FITS row 0 is the bottom of the picture
    assert (pixels[512 - 140 : 512 - 100, 200:260] == 0).all()
    assert pixels[512 - 1 - 300, 300] == 0 and pixels[512 - 1 - 301, 301] == 0
    assert (pixels[-8:, :] == 255).all()
    # the ZScale + asinh stretch spreads the sky over the grey levels rather than crushing it
    background = pixels[200:300, 400:600]
    assert 30 < background.mean() < 230 and background.std() > 5
    assert result.metadata == {
        "OBJECT": "NGC 1300", "RA": "49.9208", "DEC": "-19:24:41",
        "DATE-OBS": "2026-11-30T03:12:45", "FILTER": "r", "EXPTIME": "30.0",
        "TELESCOP": "Rubin", "INSTRUME": "LSSTCam",
        "source_format": "FITS", "source_width": "640", "source_height": "512",
    }


def test_fits_image_in_an_extension_after_an_empty_primary(tmp_path):
    primary = fits.PrimaryHDU()
    primary.header["TELESCOP"] = "Rubin"
    primary.header["OBJECT"] = "field 12"
    ext = fits.ImageHDU(sky((300, 200)), name="SCI")
    ext.header["OBJECT"] = "field 12, detector 4"  # the image HDU's card wins
    ext.header["FILTER"] = "g"
    table = fits.BinTableHDU.from_columns([fits.Column(name="x", format="E", array=np.zeros(3))])
    path = tmp_path / "calexp.fits"
    fits.HDUList([primary, ext, table]).writeto(path)

    result = convert(path)

    assert decoded(result).size == (200, 300)
    assert result.metadata["OBJECT"] == "field 12, detector 4"
    assert result.metadata["TELESCOP"] == "Rubin"
    assert result.metadata["FILTER"] == "g"
    assert result.metadata["source_hdu"] == "1"
    assert "RA" not in result.metadata


def test_tile_compressed_fits_as_rubin_writes_it(tmp_path):
    data = sky((256, 256))
    compressed = fits.CompImageHDU(data, compression_type="RICE_1", quantize_level=16)
    compressed.header["OBJECT"] = "visit 42"
    path = tmp_path / "calexp.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), compressed]).writeto(path)

    result = convert(path)

    assert decoded(result).size == (256, 256)
    assert np.asarray(decoded(result)).std() > 5
    assert result.metadata["OBJECT"] == "visit 42" and result.metadata["source_hdu"] == "1"


def test_fits_cube_takes_its_first_plane(tmp_path):
    first, second = sky((120, 160), seed=2), sky((120, 160), seed=3)
    cube = np.stack([first, second, second])
    fits.PrimaryHDU(cube).writeto(tmp_path / "cube.fits")
    fits.PrimaryHDU(first).writeto(tmp_path / "plane0.fits")
    fits.PrimaryHDU(second).writeto(tmp_path / "plane1.fits")

    result = convert(tmp_path / "cube.fits")

    assert decoded(result).size == (160, 120)
    assert result.data == convert(tmp_path / "plane0.fits").data
    assert result.data != convert(tmp_path / "plane1.fits").data

    # tile-compressed (losslessly), only the first plane's tiles are decompressed
    compressed = fits.CompImageHDU(cube, compression_type="GZIP_1", quantize_level=0.0)
    fits.HDUList([fits.PrimaryHDU(), compressed]).writeto(tmp_path / "cube.fits.fz")
    assert convert(tmp_path / "cube.fits.fz").data == result.data


def test_fits_integer_data_with_bzero_and_an_all_nan_image(tmp_path):
    counts = (sky((64, 64)) * 10).astype(np.int32)
    hdu = fits.PrimaryHDU(counts.astype(np.uint16))  # astropy writes uint16 as int16 + BZERO
    hdu.writeto(tmp_path / "uint16.fits")
    assert np.asarray(decoded(convert(tmp_path / "uint16.fits"))).std() > 5

    fits.PrimaryHDU(np.full((40, 50), np.nan, dtype=np.float32)).writeto(tmp_path / "nan.fits")
    blank = decoded(convert(tmp_path / "nan.fits"))
    assert blank.size == (50, 40) and np.asarray(blank).max() == 0


def test_fits_without_image_data_is_refused(tmp_path):
    table = fits.BinTableHDU.from_columns([fits.Column(name="x", format="E", array=np.zeros(3))])
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(tmp_path / "table.fits")
    with pytest.raises(Refused) as refused:
        convert(tmp_path / "table.fits")
    assert refused.value.reason == "FITS has no image HDU with data"


def test_sixteen_bit_tiff_is_stretched_to_eight_bits(tmp_path):
    rng = np.random.default_rng(4)
    # a 12-bit camera's range in a 16-bit file: shifting right by 8 would leave it nearly black
    data = np.tile(np.linspace(200, 4000, 300, dtype=np.uint16), (200, 1))
    data[:, :10] = rng.integers(100, 300, (200, 10), dtype=np.uint16)
    data[0, 0] = 65535  # one hot pixel must not flatten the rest
    path = tmp_path / "scan.tif"
    Image.fromarray(data).save(path, tiffinfo={270: "flat field, detector 4", 306: "2026:11:30 03:12:45"})
    assert Image.open(path).mode == "I;16"

    result = convert(path)

    image = decoded(result)
    assert (result.extension, image.mode, image.size) == ("png", "L", (300, 200))
    pixels = np.asarray(image)
    assert pixels[0, 0] == 255 and pixels[1:, :10].max() < 15 and pixels[100, -1] > 245
    row = pixels[100, 10:].astype(int)
    assert (np.diff(row) >= 0).all() and len(np.unique(row)) > 200
    assert result.metadata == {
        "source_format": "TIFF", "source_width": "300", "source_height": "200",
        "source_mode": "I;16", "ImageDescription": "flat field, detector 4",
        "DateTime": "2026:11:30 03:12:45",
    }


def test_five_megabyte_noise_png_comes_out_under_the_limit(tmp_path):
    rng = np.random.default_rng(5)
    path = tmp_path / "noise.png"
    Image.fromarray(rng.integers(0, 256, (1300, 1300, 3), dtype=np.uint8)).save(path)
    assert path.stat().st_size > 5_000_000  # noise does not compress

    result = convert(path)

    image = decoded(result)
    assert result.extension == "jpg" and image.mode == "RGB"
    assert result.metadata == {"source_format": "PNG", "source_width": "1300",
                               "source_height": "1300", "source_mode": "RGB"}

    # a limit JPEG quality alone cannot meet: the image is downscaled until it fits
    small = convert(path, max_bytes=60_000)
    assert 30_000 <= len(small.data) <= 60_000 and small.width < 1300 and small.height < 1300
    assert abs(small.width - small.height) <= 1
    assert decoded(small).format == "JPEG"


def test_large_png_that_compresses_well_stays_png_at_full_size(tmp_path):
    # 4 million pixels: big enough that the PNG is first judged on a sample of its rows
    image = np.zeros((2000, 2000), dtype=np.uint8)
    image[::50, :] = 255
    image[:, 1000:1010] = 128
    path = tmp_path / "grid.tif"
    Image.fromarray(image).save(path)

    result = convert(path)

    assert (result.extension, result.width, result.height) == ("png", 2000, 2000)
    assert np.array_equal(np.asarray(decoded(result)), image)


def test_small_png_stays_png_and_keeps_its_text(tmp_path):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "Crab nebula")
    info.add_text("Comment", "not kept")
    path = tmp_path / "crab.png"
    Image.fromarray(np.tile(np.arange(256, dtype=np.uint8), (64, 1))).save(path, pnginfo=info)

    result = convert(path)

    assert result.extension == "png"
    assert np.array_equal(np.asarray(decoded(result)), np.asarray(Image.open(path)))
    assert result.metadata["Title"] == "Crab nebula" and "Comment" not in result.metadata


def test_jpeg_in_jpeg_out_and_rgba_png_laid_on_white(tmp_path):
    rng = np.random.default_rng(6)
    photo = tmp_path / "photo.jpg"
    Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)).save(photo, quality=95)
    result = convert(photo, prefer="jpg")
    assert (result.extension, decoded(result).size) == ("jpg", (320, 240))
    assert result.metadata["source_format"] == "JPEG"

    rgba = np.zeros((50, 60, 4), dtype=np.uint8)  # fully transparent black
    Image.fromarray(rgba).save(tmp_path / "clear.png")
    flat = convert(tmp_path / "clear.png", prefer="jpeg")
    image = decoded(flat)
    assert image.mode == "RGB" and np.asarray(image).min() > 250


def test_type_comes_from_content_not_the_name(tmp_path):
    misnamed = tmp_path / "really-a-png.txt"
    Image.new("L", (30, 20), 128).save(misnamed, format="PNG")
    assert decoded(convert(misnamed)).size == (30, 20)

    text = tmp_path / "notes.fits"
    text.write_text("SIMPLE is what this is not; just some notes\n")
    with pytest.raises(Refused) as refused:
        convert(text)
    assert refused.value.reason == "unsupported file type: text/plain"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "unsupported file type: image/gif"),
        (bytes(range(256)) * 4, "unsupported file type: application/octet-stream"),
    ],
)
def test_other_content_is_refused_with_its_reason(tmp_path, content, reason):
    path = tmp_path / "upload.png"
    path.write_bytes(content)
    with pytest.raises(Refused) as refused:
        convert(path)
    assert refused.value.reason == reason


def test_truncated_png_and_corrupt_fits_are_refused(tmp_path):
    rng = np.random.default_rng(7)
    whole = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (200, 200), dtype=np.uint8)).save(whole, "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    with pytest.raises(Refused) as refused:
        convert(path)
    assert refused.value.reason.startswith("corrupt or truncated PNG image:")

    good = tmp_path / "good.fits"
    fits.PrimaryHDU(sky((100, 100))).writeto(good)
    cut = tmp_path / "cut.fits"
    cut.write_bytes(good.read_bytes()[:2880 + 1000])  # header intact, data cut short
    with pytest.raises(Refused) as refused:
        convert(cut)
    assert refused.value.reason.startswith("corrupt FITS file: File may have been truncated")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height (a decompression bomb's calling card)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [12_000, 40_000])  # over the limit (a warning), over twice it (an error)
def test_decompression_bomb_is_refused(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(side, side))
    with pytest.raises(Refused) as refused:
        convert(path)
    assert refused.value.reason.startswith("image too large:")


def test_a_fits_image_over_the_pixel_limit_is_refused_before_reading_it(tmp_path):
    header = fits.Header()
    header["SIMPLE"], header["BITPIX"], header["NAXIS"] = True, -32, 2
    header["NAXIS1"], header["NAXIS2"] = 20_000, 20_000
    path = tmp_path / "huge.fits"
    path.write_bytes(header.tostring().encode("ascii"))  # no data at all: never read
    with pytest.raises(Refused) as refused:
        convert(path)
    assert refused.value.reason.startswith("image too large: 20000x20000")


def test_two_at_once_in_forked_processes_match_one_at_a_time(tmp_path):
    """The way two prefork workers run it: forked after the import, the same file in both."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    fits.PrimaryHDU(sky((400, 300))).writeto(tmp_path / "a.fits")
    data = np.tile(np.linspace(0, 60000, 300, dtype=np.uint16), (200, 1))
    Image.fromarray(data).save(tmp_path / "b.tif")
    paths = [tmp_path / "a.fits", tmp_path / "b.tif", tmp_path / "a.fits", tmp_path / "b.tif"]
    serial = [convert(p) for p in paths]

    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        parallel = list(pool.map(convert, paths))

    assert parallel == serial
    assert [r.extension for r in parallel] == ["png", "png", "png", "png"]
