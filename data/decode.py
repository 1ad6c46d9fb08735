"""Robust image decoding: one function for the tf.data pipeline, one inspection for the scan.

Most files decode with tf.io inside the graph (JPEG incl. CMYK, PNG, BMP, GIF, WebP), so common
datasets keep a pure-graph, parallel pipeline. OpenCV, through tf.numpy_function, decodes only
what tf.io cannot (TIFF, anything tf.io rejects) and very large images, which it decodes reduced
so an 8000x8000 scan never sits in memory at full size. The scan (`inspect_image`) picks the
decoder of each file and decodes it once with the same functions the pipeline uses, so every
file that passes the scan decodes in training.

Rules:
- 8-bit images are divided by 255; deeper ones (16-bit PNG/TIFF, float TIFF) are scaled by
  their own min..max, because 12-bit medical scans stored as 16-bit would otherwise come out
  nearly black (tf.io's dtype=float32 divides by 65535).
- Alpha is ignored (the colour channels are kept as stored, not composited): an alpha channel
  in scans and photos is an export artefact, and compositing would invent a background.
- Palette images decode to their colours; animated GIFs to their first frame.
- Images under MIN_SIDE pixels on a side are skipped ("too small (1x1)"): they carry no
  structure to learn at the model's 32..256 px input.
- A JPEG without its end marker or a PNG without its IEND chunk is skipped as truncated, even
  where a decoder would fill the missing part with grey.
"""

from __future__ import annotations

import pathlib
import re
import struct

import cv2
import numpy as np
import tensorflow as tf

DECODERS = ("tf", "tf_png16", "opencv")
MIN_SIDE = 8
# Images with a side above LARGE_SIDE are decoded reduced by a power of two, keeping both sides
# at least REDUCED_MIN_SIDE: twice the largest model input, so the final resize loses nothing.
LARGE_SIDE = 4096
REDUCED_MIN_SIDE = 512
_REDUCTIONS = (8, 4, 2)
_SIGNATURES = (
    (b"\xff\xd8", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_PNG_MODES = {0: ("L", 1), 2: ("RGB", 3), 3: ("P", 1), 4: ("LA", 2), 6: ("RGBA", 4)}
_JPEG_MODES = {1: "L", 3: "RGB", 4: "CMYK"}
_MODE_OF_CHANNELS = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
_OPENCV_REDUCED_JPEG = {
    2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8
}


class UnusableImage(Exception):
    """A file that cannot be used; str(e) is the reason recorded in ImageCollection.skipped."""


def decode_file(path, decoder="tf", reduction=1):
    """Image file -> float32 [H, W, C] in [0, 1], C = 1 (grey) or 3 (colour).

    `decoder` is a DECODERS tag, or an int tensor indexing DECODERS when files of one dataset
    need different decoders; `reduction` (1, 2, 4, 8) shrinks very large images as they are
    decoded (OpenCV decoder only). Both come from the scan's file_info.
    """
    return _decode(tf.io.read_file(path), decoder, reduction)[0]


def _decode(data, decoder, reduction):
    """(image as decode_file returns it, channels stored in the file, bit depth)."""
    values, bit_depth = _decode_values(data, decoder, reduction)
    return unit_range(values, bit_depth), tf.shape(values)[-1], bit_depth


# The scan calls this once per file: as one graph it runs about 3x faster than op by op (eagerly).
@tf.function
def _decode_in_scan(data, decoder, reduction):
    image, channels, bit_depth = _decode(data, decoder, reduction)
    return image, channels, bit_depth, tf.shape(image)


def _colour_channels(image):
    """[..., C] with C in 1..4 -> the colour channels only: L and LA keep 1, RGB and RGBA keep 3."""
    return image[..., : tf.where(tf.shape(image)[-1] >= 3, 3, 1)]


def inspect_image(path, prepare=None) -> tuple[dict, np.ndarray]:
    """Check one file and decode it once: (file_info, float32 [H, W, C] in [0, 1]).

    file_info = {"format", "width", "height", "channels", "mode", "bit_depth", "decoder",
    "reduction"}, sizes and channels as stored. Raises UnusableImage with the reason to skip it.
    `prepare`, a TensorFlow function of that image, is applied inside the decoding graph and its
    result (any structure of tensors, as numpy) is returned instead of the image: `predict` resizes
    there, which saves converting and copying every full-size image out of TensorFlow.
    """
    data = pathlib.Path(path).read_bytes()
    image_format = _check_container(data)
    info = {"format": image_format, **_header_info(image_format, data)}
    reduction = 1
    if "width" in info:
        _check_size(info["width"], info["height"])
        reduction = _reduction(info["width"], info["height"])
    decoder = "opencv" if reduction > 1 else _first_choice_decoder(info)
    data = tf.constant(data)  # not bytes: numpy_function would drop their trailing NULs
    decode = _decode_in_scan if prepare is None else _decoder_with(prepare)
    image, channels, bit_depth, shape, decoder = _decode_or_fall_back(data, decoder, reduction, image_format, decode)
    if "width" not in info:  # no header read for this format: sizes come from the decoded image
        height, width = (int(side) for side in shape[:2])
        _check_size(width, height)
        info.update(width=width, height=height, channels=int(channels), mode=_MODE_OF_CHANNELS[int(channels)])
        reduction = _reduction(width, height)
        if reduction > 1:  # a large BMP/GIF/WebP/TIFF: decode again, reduced, as the pipeline will
            image, _, bit_depth, _, decoder = _decode_or_fall_back(data, "opencv", reduction, image_format, decode)
    info.update(bit_depth=int(bit_depth), decoder=decoder, reduction=reduction)
    return info, tf.nest.map_structure(lambda tensor: tensor.numpy(), image)


def warm_up(prepare):
    """Trace inspect_image's decoder with `prepare` for 8-bit files (JPEG, PNG: tf.io) on a tiny in-memory PNG,
    so that the first files scored do not pay for the tracing (predict's rate is counted after start-up)."""
    _decoder_with(prepare)(tf.io.encode_png(tf.zeros((8, 8, 3), tf.uint8)), "tf", tf.constant(1))


def _decoder_with(prepare):
    """_decode_in_scan with `prepare` applied to the image in the same graph (inspect_image's `prepare`).

    Kept on `prepare` itself, so it is traced once per function and freed with it (a module-level cache
    would hold every call's graphs for as long as the process lives).
    """
    decode = getattr(prepare, "_decoder", None)
    if decode is None:

        def decode_and_prepare(data, decoder, reduction):
            image, channels, bit_depth = _decode(data, decoder, reduction)
            return prepare(image), channels, bit_depth, tf.shape(image)

        decode = prepare._decoder = tf.function(decode_and_prepare)
    return decode


def _sniff_format(data: bytes) -> str | None:
    """Image format from the file's first bytes (not its suffix, which can lie)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((name for signature, name in _SIGNATURES if data.startswith(signature)), None)


def _check_container(data: bytes) -> str:
    """The image format; UnusableImage for an empty file, a non-image or a truncated file."""
    if not data:
        raise UnusableImage("empty file")
    image_format = _sniff_format(data)
    if image_format is None:
        raise UnusableImage(f"not an image (content starts with {data[:8]!r})")
    if not _has_end_marker(image_format, data):
        raise UnusableImage(f"truncated ({image_format} without its end marker)")
    return image_format


def _has_end_marker(image_format: str, data: bytes) -> bool:
    if image_format == "JPEG":
        # EOI after the last start-of-scan: scan data cannot hold either marker (byte stuffing),
        # and bytes appended after EOI by some cameras are allowed.
        return data.rfind(b"\xff\xd9") > data.rfind(b"\xff\xda")
    if image_format == "PNG":
        return b"IEND\xaeB`\x82" in data  # the IEND chunk type and its fixed CRC; data may follow it
    return True


def _header_info(image_format: str, data: bytes) -> dict:
    """Size, channels, mode and bit depth from the header, for the formats where that is cheap."""
    if image_format == "PNG":
        if data[12:16] != b"IHDR" or len(data) < 26:
            raise UnusableImage("corrupt PNG (no IHDR header chunk)")
        width, height, bit_depth, colour_type = struct.unpack(">IIBB", data[16:26])
        mode, channels = _PNG_MODES.get(colour_type, ("unknown", 0))
        return {"width": width, "height": height, "channels": channels, "mode": mode, "bit_depth": bit_depth}
    if image_format == "JPEG":
        try:
            height, width, channels = tf.io.extract_jpeg_shape(data).numpy().tolist()
        except tf.errors.OpError as error:
            raise UnusableImage(f"corrupt JPEG ({_decoder_message(error)})") from None
        return {"width": width, "height": height, "channels": channels, "mode": _JPEG_MODES.get(channels, "?")}
    return {}


def _check_size(width: int, height: int) -> None:
    if min(width, height) < MIN_SIDE:
        raise UnusableImage(f"too small ({width}x{height})")


def _first_choice_decoder(info: dict) -> str:
    if info["format"] == "TIFF":
        return "opencv"
    if info["format"] == "PNG" and info.get("bit_depth") == 16:
        return "tf_png16"
    return "tf"


def _reduction(width: int, height: int) -> int:
    if max(width, height) <= LARGE_SIDE:
        return 1
    return next((r for r in _REDUCTIONS if min(width, height) // r >= REDUCED_MIN_SIDE), 1)


def _decode_or_fall_back(data, decoder: str, reduction: int, image_format: str, decode=_decode_in_scan):
    """(image, stored channels, bit depth, decoded shape, decoder used): `decoder`, else OpenCV where tf.io fails.

    OpenCV reads some variants tf.io rejects (odd BMPs, for one); when both fail, tf.io's
    message, which names the problem, becomes the reason.
    """
    try:
        return (*decode(data, decoder, tf.constant(reduction)), decoder)
    except tf.errors.OpError as error:
        first_error = error
    if decoder != "opencv":
        try:
            return (*decode(data, "opencv", tf.constant(reduction)), "opencv")
        except tf.errors.OpError:
            pass
    raise UnusableImage(f"corrupt {image_format} ({_decoder_message(first_error)})")


def _decoder_message(error: Exception) -> str:
    """The decoder's own words from a TensorFlow error, without node names and graph traces."""
    text = getattr(error, "message", str(error)).split("\t [[")[0]
    text = re.sub(r"\{\{.*?\}\}|\[Op:.*?\]", "", text)
    last_line = [line.strip() for line in text.splitlines() if line.strip()][-1]
    return last_line.removeprefix("ValueError: ")[:200]


def _decode_values(data, decoder, reduction):
    """(values float32 [H, W, C] in the file's own scale, bit depth int32) with all channels."""
    branches = {
        "tf": lambda: _decode_with_tf(data),
        "tf_png16": lambda: _decode_png16(data),
        "opencv": lambda: _decode_with_opencv(data, reduction),
    }
    if isinstance(decoder, str):
        return branches[decoder]()
    return tf.switch_case(decoder, [branches[name] for name in DECODERS])


def _decode_with_tf(data):
    image = tf.io.decode_image(data, channels=0, dtype=tf.uint8, expand_animations=False)
    return tf.cast(image, tf.float32), tf.constant(8)


def _decode_png16(data):
    return tf.cast(tf.io.decode_png(data, channels=0, dtype=tf.uint16), tf.float32), tf.constant(16)


def _decode_with_opencv(data, reduction):
    values, bit_depth = tf.numpy_function(
        _read_with_opencv, [data, reduction], (tf.float32, tf.int32), stateful=False
    )
    values.set_shape([None, None, None])
    return values, tf.ensure_shape(bit_depth, [])


def _read_with_opencv(data: bytes, reduction) -> tuple[np.ndarray, np.int32]:
    """OpenCV decode: RGB(A) channel order, float32 values as stored, and the bit depth."""
    if isinstance(data, np.ndarray):  # eager numpy_function passes a 0-d object array
        data = data.item()
    buffer = np.frombuffer(data, np.uint8)
    reduction = int(reduction)
    if reduction > 1 and _sniff_format(data) == "JPEG":
        image = cv2.imdecode(buffer, _OPENCV_REDUCED_JPEG[reduction])  # libjpeg DCT scaling
    else:
        image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
        if image is not None and reduction > 1:  # shrink right after decoding, before any copy
            height, width = image.shape[:2]
            image = cv2.resize(image, (width // reduction, height // reduction), interpolation=cv2.INTER_AREA)
    if image is None:
        raise ValueError("OpenCV cannot decode it")
    if image.ndim == 2:
        image = image[..., None]
    elif image.shape[-1] >= 3:
        image = np.concatenate([image[..., 2::-1], image[..., 3:]], axis=-1)  # BGR(A) -> RGB(A)
    bit_depth = 8 if image.dtype == np.uint8 else 8 * image.dtype.itemsize
    return image.astype(np.float32), np.int32(bit_depth)


def unit_range(values, bit_depth):
    """Training's intensity step: values as stored [..., H, W, C] (C 1..4) -> colour channels in [0, 1].

    8-bit: / 255. Deeper: each image's own min..max -> 0..1 (a flat image gives 0). Public because
    the exported model applies it too (evaluation.export), so a 16-bit file scores as in training.
    """
    values = _colour_channels(tf.convert_to_tensor(values, tf.float32))

    def stretch():
        low = tf.reduce_min(values, axis=[-3, -2, -1], keepdims=True)
        high = tf.reduce_max(values, axis=[-3, -2, -1], keepdims=True)
        return tf.math.divide_no_nan(values - low, high - low)

    return tf.cond(tf.equal(bit_depth, 8), lambda: values / 255.0, stretch)
