"""Turn a collection's image file into a PNG or JPEG a citizen-science platform can show.

In: FITS (the first HDU with 2-D or larger image data; of a cube, the first plane), TIFF
(8- or 16-bit), PNG and JPEG, told apart by their first bytes, never by the file name.
Out: PNG or JPEG of at most `max_bytes` (Zooniverse takes subject images up to 1,000 KB):
the preferred format first, then JPEG at falling quality, then smaller and smaller copies.
Anything else (text, a truncated or corrupt image, an image over Pillow's decompression-bomb
limit, an empty file) raises `Refused` with a reason a person can read on the batch.

FITS pixels are scaled the way astronomers look at them: a ZScale interval (sampled from
the image, NaNs and infinities left out) and an asinh stretch, to 8-bit grey; pixels that
are NaN or infinite come out at the minimum. The data are memory-mapped (a cube's first
plane read alone) and scaled in blocks of rows through a 4 MB float32 buffer straight into
the 8-bit result, so a 4096x4096 float32 image needs about 100 MB beyond the interpreter.
FITS rows run bottom-up, so the picture is flipped to show north up the way DS9 does.

16-bit TIFFs (and 16-bit PNGs) are stretched linearly between their 0.05th and 99.95th
percentiles (read off a histogram, so a few hot pixels do not flatten the rest) through a
lookup table, without a float copy.

`Converted.metadata` holds what the file says about itself: for FITS the header cards
OBJECT, RA, DEC, DATE-OBS, FILTER, EXPTIME, TELESCOP and INSTRUME when present (the
image HDU's cards over the primary header's); for every type `source_format`,
`source_width` and `source_height`; for Pillow's types `source_mode`, and TIFF's
ImageDescription and DateTime or PNG's Title, Description and Creation Time text chunks.
"""

from __future__ import annotations

import io
import itertools
import math
import pathlib
import re
import warnings
from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits
from astropy.io.fits.card import Undefined
from astropy.visualization import AsinhStretch, ZScaleInterval
from PIL import Image, ImageOps

from exporter.errors import ExporterError

FITS_KEYS = ("OBJECT", "RA", "DEC", "DATE-OBS", "FILTER", "EXPTIME", "TELESCOP", "INSTRUME")
TIFF_TAGS = {270: "ImageDescription", 306: "DateTime"}
PNG_TEXT_KEYS = ("Title", "Description", "Creation Time")
JPEG_QUALITIES = (90, 80, 70, 60)
DOWNSCALE_QUALITY = 80
DOWNSCALE_TRIES = 8
PNG_SAMPLE_BANDS = 8
HISTOGRAM_CHUNK = 1 << 20
BLOCK_PIXELS = 1 << 20  # float32 pixels scaled at a time (4 MB)
SMALLEST_SIDE = 32  # below this a picture is no use to a volunteer; refuse instead
ZSCALE_SAMPLE = 10_000  # pixels handed to ZScaleInterval (it keeps 1,000 of them)
PERCENTILES = (0.0005, 0.9995)
MAX_VALUE_CHARS = 256

# First bytes of each format, and a name for the types refused outright.
SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"SIMPLE  =", "fits"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "image/tiff (BigTIFF)"),
    (b"MM\x00+", "image/tiff (BigTIFF)"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
    (b"%PDF", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
    (b"\x1f\x8b", "application/gzip"),
)
SUPPORTED = {"fits", "png", "jpeg", "tiff"}
FORMAT_NAMES = {"fits": "FITS", "png": "PNG", "jpeg": "JPEG", "tiff": "TIFF"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class Refused(ExporterError):
    """The file cannot become a subject image; `reason` says why in words for its owner."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Converted:
    data: bytes  # PNG or JPEG, at most max_bytes
    extension: str  # "png" or "jpg"
    content_type: str  # "image/png" or "image/jpeg"
    width: int
    height: int
    metadata: dict[str, str] = field(default_factory=dict)


def convert(source: pathlib.Path, *, max_bytes: int = 1_000_000, prefer: str = "png") -> Converted:
    """Convert `source` to PNG or JPEG of at most `max_bytes`; raises Refused.

    An OSError opening `source` itself (missing, unreadable) is not the file's content at
    fault and propagates unchanged.
    """
    prefer = {"jpg": "jpeg"}.get(prefer, prefer)
    if prefer not in ("png", "jpeg"):
        raise ValueError(f"prefer must be 'png' or 'jpeg', not {prefer!r}")
    source = pathlib.Path(source)
    kind = sniff(source)
    if kind not in SUPPORTED:
        raise Refused(f"unsupported file type: {kind}")
    if kind == "fits":
        image, metadata = _read_fits(source)
    else:
        image, metadata = _read_pillow(source, kind)
    data, fmt, image = fit(image, max_bytes=max_bytes, prefer=prefer)
    ext, content_type = ("png", "image/png") if fmt == "png" else ("jpg", "image/jpeg")
    return Converted(data, ext, content_type, image.width, image.height, metadata)


def sniff(source: pathlib.Path) -> str:
    """The file's type from its first bytes: a key of SUPPORTED, or a MIME type to refuse."""
    with open(source, "rb") as fh:
        head = fh.read(4096)
    if not head:
        raise Refused("empty file")
    for magic, kind in SIGNATURES:
        if head.startswith(magic):
            return kind
    if head[:12].startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
            return "text/plain"
        except UnicodeDecodeError as exc:
            if exc.start >= len(head) - 3:  # a multibyte character cut by the 4096-byte read
                return "text/plain"
    return "application/octet-stream"


# ---------------------------------------------------------------- FITS


def _read_fits(source: pathlib.Path) -> tuple[Image.Image, dict[str, str]]:
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            return _first_image(source)
    except Refused:
        raise
    except (OSError, ValueError, TypeError, IndexError, KeyError, EOFError) as exc:
        # astropy warns that a file is shorter than its header says, then fails vaguely
        said = [str(w.message) for w in caught if "truncated" in str(w.message)]
        raise Refused(f"corrupt FITS file: {_one_line(said[0] if said else exc)}") from None


def _first_image(source: pathlib.Path) -> tuple[Image.Image, dict[str, str]]:
    # memmap=None: mapped wherever astropy can (it cannot when BZERO/BSCALE scale the data)
    with fits.open(source, memmap=None, lazy_load_hdus=True) as hdul:
        primary = hdul[0].header
        for index, hdu in enumerate(hdul):
            if not _is_image_hdu(hdu):
                continue
            shape = hdu.shape
            if len(shape) < 2 or 0 in shape:
                continue
            height, width = shape[-2], shape[-1]
            _check_pixels(width, height)
            # A cube: its first plane alone, through `section` (only that plane's bytes or
            # compressed tiles are read and scaled; `data` would decompress or scale it all).
            data = hdu.section[(0,) * (len(shape) - 2)] if len(shape) > 2 else hdu.data
            grey = zscale_asinh(data)
            del data
            metadata = _fits_metadata(primary, hdu.header if index else None)
            metadata.update(source_format="FITS", source_width=str(width),
                            source_height=str(height))
            if index:
                metadata["source_hdu"] = str(index)
            return Image.fromarray(grey), metadata
    raise Refused("FITS has no image HDU with data")


def _is_image_hdu(hdu) -> bool:
    if not isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)):
        return False
    return bool(hdu.header.get("NAXIS", 0)) or isinstance(hdu, fits.CompImageHDU)


def zscale_asinh(data: np.ndarray) -> np.ndarray:
    """8-bit grey of a 2-D FITS array, north up: ZScale limits, asinh stretch, non-finite at 0.

    The limits come from an evenly spaced grid of pixels (strided views of the memory-mapped
    data), so the image is never copied just to drop its NaNs; then blocks of rows are
    scaled, clipped and stretched in place in a small float32 buffer and written straight
    into the 8-bit result, flipped (FITS rows run bottom-up).
    """
    height, width = data.shape
    stride = max(1, math.isqrt(data.size // ZSCALE_SAMPLE))
    sample = np.asarray(data[::stride, ::stride], dtype=np.float64).reshape(-1)
    sample = sample[np.isfinite(sample)]
    out = np.zeros((height, width), dtype=np.uint8)
    if sample.size == 0:
        return out
    vmin, vmax = ZScaleInterval().get_limits(sample)
    if not vmax > vmin:  # a flat image: any pixel at vmin is black, above it white
        vmax = vmin + 1.0
    stretch, offset, factor = AsinhStretch(), np.float32(vmin), np.float32(1.0 / (vmax - vmin))
    rows = max(1, BLOCK_PIXELS // width)
    for start in range(0, height, rows):
        block = np.subtract(data[start : start + rows], offset, dtype=np.float32)
        bad = ~np.isfinite(block)
        block *= factor
        stretch(block, clip=True, out=block)
        block *= np.float32(255.0)
        block += np.float32(0.5)
        block[bad] = 0.0
        end = height - start
        np.copyto(out[end - len(block) : end], block[::-1], casting="unsafe")
    return out


def _fits_metadata(primary, extension) -> dict[str, str]:
    metadata: dict[str, str] = {}
    for header in (primary, extension):
        if header is None:
            continue
        for key in FITS_KEYS:
            value = header.get(key)
            if value is None or isinstance(value, Undefined):
                continue
            text = _clean(value)
            if text:
                metadata[key] = text
    return metadata


# ---------------------------------------------------------------- TIFF, PNG, JPEG


def _read_pillow(source: pathlib.Path, kind: str) -> tuple[Image.Image, dict[str, str]]:
    name = FORMAT_NAMES[kind]
    try:
        # The warning between Pillow's limit and twice it becomes the refusal; with threads
        # (warning filters are process-wide) _check_pixels below still refuses the image.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source, formats=[name]) as im:
                width, height = im.size
                _check_pixels(width, height)
                im.load()
                metadata = {"source_format": name, "source_width": str(width),
                            "source_height": str(height), "source_mode": im.mode}
                metadata.update(_pillow_metadata(im, kind))
                ImageOps.exif_transpose(im, in_place=True)  # a no-op, not a copy, when upright
                image = _to_8bit(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise Refused(f"image too large: {_one_line(exc)}") from None
    except Refused:
        raise
    except (OSError, SyntaxError, ValueError, TypeError, IndexError, KeyError, EOFError) as exc:
        raise Refused(f"corrupt or truncated {name} image: {_one_line(exc)}") from None
    return image, metadata


def _pillow_metadata(im: Image.Image, kind: str) -> dict[str, str]:
    found: dict[str, object] = {}
    if kind == "tiff":
        tags = getattr(im, "tag_v2", {})
        found = {name: tags[tag] for tag, name in TIFF_TAGS.items() if tag in tags}
    elif kind == "png":
        text = getattr(im, "text", {})
        found = {key: text[key] for key in PNG_TEXT_KEYS if key in text}
    cleaned = {key: _clean(value) for key, value in found.items()}
    return {key: value for key, value in cleaned.items() if value}


def _to_8bit(im: Image.Image) -> Image.Image:
    """An image in a mode PNG and JPEG both take (L, LA, RGB, RGBA); 16-bit stretched to 8."""
    if im.mode in ("L", "LA", "RGB", "RGBA"):
        return im
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        return Image.fromarray(_stretch_to_8bit(np.asarray(im)))
    if im.mode == "P":
        return im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("1", "La"):
        return im.convert("L" if im.mode == "1" else "LA")
    return im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX, RGBa


def _stretch_to_8bit(arr: np.ndarray) -> np.ndarray:
    """Linear stretch between robust percentiles; uint16 through a histogram and a lookup table."""
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 2:
        counts = np.zeros(65536, dtype=np.int64)
        flat = arr.reshape(-1)
        for start in range(0, flat.size, HISTOGRAM_CHUNK):  # bincount widens to int64: chunk it
            counts += np.bincount(flat[start : start + HISTOGRAM_CHUNK], minlength=65536)
        cumulative = np.cumsum(counts)
        low, high = (int(np.searchsorted(cumulative, p * cumulative[-1])) for p in PERCENTILES)
        levels = np.arange(65536, dtype=np.float32)
        lut = _linear(levels, low, high)
        return lut[arr]
    values = arr.astype(np.float32, copy=False)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(arr.shape, dtype=np.uint8)
    low, high = np.quantile(finite, PERCENTILES)
    out = _linear(values, float(low), float(high))
    out[~np.isfinite(values)] = 0
    return out


def _linear(values: np.ndarray, low: float, high: float) -> np.ndarray:
    span = high - low if high > low else 1.0
    with np.errstate(invalid="ignore"):
        scaled = (values - np.float32(low)) * np.float32(255.0 / span) + np.float32(0.5)
        np.clip(scaled, 0, 255, out=scaled)
        scaled[~np.isfinite(scaled)] = 0
    return scaled.astype(np.uint8)


# ---------------------------------------------------------------- encoding within the limit


def fit(image: Image.Image, *, max_bytes: int, prefer: str) -> tuple[bytes, str, Image.Image]:
    """Encode `image` in at most `max_bytes`: (bytes, "png" or "jpeg", the image encoded).

    The preferred format first (a large PNG is first tried on a sample of its rows, and
    skipped when that sample says the whole cannot fit); then JPEG at each of JPEG_QUALITIES,
    stopping early once a quality comes out more than twice too big, where lower qualities
    will not save it; then copies of the image scaled down (see `_downscale`).
    """
    if prefer == "png" and _png_hopeless(image, max_bytes):
        data = b""
    else:
        data = _encode(image, prefer, JPEG_QUALITIES[0])
        if len(data) <= max_bytes:
            return data, prefer, image
    for quality in JPEG_QUALITIES:
        if prefer == "jpeg" and quality == JPEG_QUALITIES[0]:
            continue
        data = _encode(image, "jpeg", quality)
        if len(data) <= max_bytes:
            return data, "jpeg", image
        if len(data) > 2 * max_bytes:
            break
    return _downscale(image, len(data), max_bytes)


def _downscale(image: Image.Image, full_bytes: int, max_bytes: int) -> tuple[bytes, str, Image.Image]:
    """The largest copy (within DOWNSCALE_TRIES tries) whose JPEG at DOWNSCALE_QUALITY fits.

    Bytes are modelled as c * scale**k, aiming at 90% of the limit: k = 2 (bytes go with the
    pixel count) from the full-size try, then k fitted to the last two tries (noise averages
    out as an image shrinks, so k is often nearer 3). Each guess stays between the largest
    scale that fitted and the smallest that did not; 70% of the limit is good enough.
    """
    fits_at, too_big_at = 0.0, 1.0
    best: tuple[bytes, Image.Image] | None = None
    tries: list[tuple[float, int]] = []  # (scale, bytes) at DOWNSCALE_QUALITY
    for attempt in itertools.count():
        if attempt >= DOWNSCALE_TRIES and best is not None:
            break
        scale, size_bytes = tries[-1] if tries else (1.0, full_bytes)
        k = 2.0
        if len(tries) >= 2 and tries[-1][0] != tries[-2][0] and tries[-1][1] != tries[-2][1]:
            (s0, b0), (s1, b1) = tries[-2], tries[-1]
            k = min(4.0, max(1.0, math.log(b1 / b0) / math.log(s1 / s0)))
        guess = scale * (0.9 * max_bytes / size_bytes) ** (1.0 / k)
        if not fits_at < guess < too_big_at:
            guess = (fits_at + too_big_at) / 2
        size = (max(1, round(image.width * guess)), max(1, round(image.height * guess)))
        if min(size) < SMALLEST_SIDE:
            break
        smaller = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        data = _encode(smaller, "jpeg", DOWNSCALE_QUALITY)
        tries.append((guess, max(len(data), 1)))
        if len(data) <= max_bytes:
            fits_at, best = guess, (data, smaller)
            if len(data) >= 0.7 * max_bytes:
                break
        else:
            too_big_at = guess
    if best is None:
        raise Refused(f"cannot fit the image in {max_bytes} bytes, even scaled down")
    return best[0], "jpeg", best[1]


def _png_hopeless(image: Image.Image, max_bytes: int) -> bool:
    """Whether a PNG of this large image would clearly be over max_bytes, judged from
    PNG_SAMPLE_BANDS bands of rows spread over it (a sixteenth of the image) at a fraction
    of the cost of encoding it all."""
    if image.width * image.height < 4 * max_bytes or image.height < 16 * PNG_SAMPLE_BANDS:
        return False
    band = image.height // (16 * PNG_SAMPLE_BANDS)
    step = image.height // PNG_SAMPLE_BANDS
    sample = Image.new(image.mode, (image.width, band * PNG_SAMPLE_BANDS))
    for i in range(PNG_SAMPLE_BANDS):
        sample.paste(image.crop((0, i * step, image.width, i * step + band)), (0, i * band))
    estimate = len(_encode(sample, "png", 0)) * image.height / sample.height
    return estimate > 2 * max_bytes


def _encode(image: Image.Image, fmt: str, quality: int) -> bytes:
    out = io.BytesIO()
    if fmt == "png":
        image.save(out, "PNG")
    else:
        if image.mode in ("LA", "RGBA"):  # JPEG has no alpha: lay the picture on white
            image = _on_white(image)
        image.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()


def _on_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB" if image.mode == "RGBA" else "L")


# ---------------------------------------------------------------- helpers


def _check_pixels(width: int, height: int) -> None:
    limit = Image.MAX_IMAGE_PIXELS
    if limit and width * height > limit:
        raise Refused(f"image too large: {width}x{height} is over the {limit}-pixel limit")


def _clean(value: object) -> str:
    text = _CONTROL.sub(" ", str(value)).strip()
    return text[:MAX_VALUE_CHARS]


def _one_line(exc: BaseException) -> str:
    return _clean(exc) or type(exc).__name__
