"""Every kind of hostile file a downloaded dataset holds, through the real scan and tf.data pipeline."""

import os
import pathlib

import cv2
import numpy as np
import pytest

# Pillow (a dependency of matplotlib) writes what OpenCV cannot: GIF, palette and CMYK images.
from PIL import Image

from data.decode import decode_file
from data.files import list_image_files
from data.pipeline import image_dataset
from data.sources import load_dataset

SIZE = 64  # written images are SIZE x SIZE and the pipeline resizes to SIZE: values pass unchanged
TOLERANCE = 2e-4  # tf.image.rgb_to_grayscale's weights sum to 0.9999; far below one grey level (0.004)
CMYK = (10, 200, 30, 40)
CMYK_AS_RGB = tuple((255 - CMYK[i]) * (255 - CMYK[3]) / 255 for i in range(3))
BAD = {
    "empty.png": "empty file",
    "truncated.png": "truncated (PNG without its end marker)",
    "truncated.jpg": "truncated (JPEG without its end marker)",
    "corrupt.jpg": "corrupt JPEG (",
    "x.png": "not an image (content starts with b'patient ')",
    "tiny.png": "too small (1x1)",
    "notes.txt": "not a supported image type (.txt)",
    ".DS_Store": "hidden file or folder (OS metadata)",
    "._scan.jpg": "hidden file or folder (OS metadata)",
    "__MACOSX": "macOS archive metadata folder",
    "loop": "folder already listed (it resolves to ",
}


def texture(seed):
    """A smooth random grey uint8 image spanning 0..255 (distinct per seed: no two are duplicates)."""
    smooth = cv2.GaussianBlur(np.random.default_rng(seed).normal(size=(SIZE, SIZE)), (0, 0), 3)
    return cv2.normalize(smooth, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


def write_hostile_folder(root: pathlib.Path) -> dict[str, pathlib.Path]:
    """normal/ holds every hostile kind (good and bad files), abnormal/ a few plain ones."""
    normal, abnormal = root / "normal", root / "abnormal"
    (normal / "nested" / "deeper").mkdir(parents=True)
    (normal / "__MACOSX").mkdir()
    (root / "elsewhere").mkdir()
    abnormal.mkdir()
    grey = texture(1)
    good = {
        "upper.JPG": cv2.cvtColor(texture(2), cv2.COLOR_GRAY2BGR),
        "upper.PnG": texture(3),
        "deep16.png": (1000 + texture(4).astype(np.uint16) * 4000 // 255),
        "rgba.png": np.dstack([texture(5)] * 3 + [np.zeros((SIZE, SIZE), np.uint8)]),
        "scan.bmp": texture(6),
        "scan.tif": texture(7),
        "deep16.tif": (1000 + texture(8).astype(np.uint16) * 4000 // 255),
        "гарнитура_ü.png": texture(9),
        "nested/deeper/inner.png": texture(10),
        "huge.jpg": np.full((8000, 8000), 90, np.uint8),  # flat: a small file that decodes to 64 MB
    }
    for name, array in good.items():
        assert cv2.imwrite(str(normal / name), array)  # cv2.imwrite takes non-ASCII names on Linux
    Image.fromarray(grey // 64 * 85).convert("RGB").quantize(4).save(normal / "palette.png")
    frames = [Image.fromarray(np.full((SIZE, SIZE), value, np.uint8)) for value in (50, 200)]
    frames[0].save(normal / "animated.gif", save_all=True, append_images=frames[1:])
    Image.new("CMYK", (SIZE, SIZE), CMYK).save(normal / "cmyk.jpg")
    assert cv2.imwrite(str(root / "elsewhere" / "target.png"), texture(11))
    os.symlink(root / "elsewhere" / "target.png", normal / "link.png")
    os.symlink("..", normal / "nested" / "loop")  # a folder linking to its parent

    assert cv2.imwrite(str(normal / "whole.png"), texture(12))
    assert cv2.imwrite(str(normal / "whole.jpg"), texture(13))
    png, jpeg = (normal / "whole.png").read_bytes(), (normal / "whole.jpg").read_bytes()
    (normal / "whole.png").unlink()
    (normal / "whole.jpg").unlink()
    contents = {
        "empty.png": b"",
        "truncated.png": png[: len(png) * 2 // 3],
        "truncated.jpg": jpeg[: len(jpeg) * 2 // 3],
        "corrupt.jpg": jpeg[:2] + b"\x13" * 64 + jpeg[66:],  # markers overwritten; EOI intact
        "x.png": b"patient notes, not a picture",
        "notes.txt": b"patient notes",
        ".DS_Store": b"\x00\x00\x00\x01Bud1",
        "._scan.jpg": b"\x00\x05\x16\x07AppleDouble",
        "__MACOSX/._scan.jpg": b"\x00\x05\x16\x07AppleDouble",
    }
    for name, data in contents.items():
        (normal / name).write_bytes(data)
    assert cv2.imwrite(str(normal / "tiny.png"), np.zeros((1, 1), np.uint8))
    for k in range(3):
        assert cv2.imwrite(str(abnormal / f"lesion_{k}.png"), texture(100 + k))
    return {"normal": normal, "abnormal": abnormal}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    folders = write_hostile_folder(tmp_path_factory.mktemp("hostile"))
    collection = load_dataset("folder", normal_dir=str(folders["normal"]), abnormal_dir=str(folders["abnormal"]))
    by_name = {pathlib.Path(path).name: index for index, path in enumerate(collection.ids)}
    return folders, collection, by_name


def model_inputs(collection, indices):
    """The real pipeline's [N, SIZE, SIZE, 1] output mapped back from [-1, 1] to [0, 1]."""
    batches = list(image_dataset(collection, np.asarray(indices), SIZE, batch_size=8))
    return (np.concatenate([batch.numpy() for batch in batches]) + 1.0) / 2.0


def test_every_bad_file_is_skipped_with_its_reason(hostile):
    _, collection, _ = hostile
    reasons = {pathlib.Path(entry["path"]).name: entry["reason"] for entry in collection.skipped}
    assert set(reasons) == set(BAD)
    for name, expected in BAD.items():
        assert reasons[name].startswith(expected), (name, reasons[name])


def test_every_usable_file_is_listed_once(hostile):
    _, collection, by_name = hostile
    assert set(by_name) == {
        "upper.JPG", "upper.PnG", "deep16.png", "rgba.png", "scan.bmp", "scan.tif", "deep16.tif",
        "гарнитура_ü.png", "inner.png", "huge.jpg", "palette.png", "animated.gif", "cmyk.jpg", "link.png",
        "lesion_0.png", "lesion_1.png", "lesion_2.png",
    }
    assert len(collection.ids) == len(by_name) == len(collection.file_info) == len(collection.groups)
    assert collection.labels.tolist() == [0] * 14 + [1] * 3
    assert any(path.endswith("normal/link.png") for path in collection.ids)  # under the link's own name


def test_file_info_records_what_each_file_holds(hostile):
    _, collection, by_name = hostile

    def info(name):
        return collection.file_info[by_name[name]]

    assert info("deep16.png") == {"format": "PNG", "width": SIZE, "height": SIZE, "channels": 1, "mode": "L",
                                  "bit_depth": 16, "decoder": "tf_png16", "reduction": 1}
    assert (info("palette.png")["mode"], info("rgba.png")["mode"], info("cmyk.jpg")["mode"]) == ("P", "RGBA", "CMYK")
    assert (info("scan.tif")["decoder"], info("deep16.tif")["bit_depth"]) == ("opencv", 16)
    assert info("huge.jpg") == {"format": "JPEG", "width": 8000, "height": 8000, "channels": 1, "mode": "L",
                                "bit_depth": 8, "decoder": "opencv", "reduction": 8}
    common = ("upper.JPG", "upper.PnG", "rgba.png", "scan.bmp", "palette.png", "animated.gif", "cmyk.jpg")
    assert {info(name)["decoder"] for name in common} == {"tf"}


def test_pipeline_decodes_every_usable_file_to_the_right_values(hostile):
    folders, collection, by_name = hostile
    images = model_inputs(collection, np.arange(len(collection)))
    assert images.shape == (len(collection), SIZE, SIZE, 1)
    assert images.min() >= 0.0 and images.max() <= 1.0

    def image(name):
        return images[by_name[name], ..., 0]

    for name in ("deep16.png", "deep16.tif"):  # 1000..5000 of 65535 -> the full range, not 0.015..0.076
        assert image(name).min() == pytest.approx(0.0, abs=TOLERANCE)
        assert image(name).max() == pytest.approx(1.0, abs=TOLERANCE)
    expected = {  # stored grey values, read back independently with OpenCV
        name: cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) / 255.0
        for name, path in (
            ("upper.PnG", folders["normal"] / "upper.PnG"),
            ("scan.bmp", folders["normal"] / "scan.bmp"),
            ("scan.tif", folders["normal"] / "scan.tif"),
            ("гарнитура_ü.png", folders["normal"] / "гарнитура_ü.png"),
            ("inner.png", folders["normal"] / "nested" / "deeper" / "inner.png"),
            ("link.png", folders["normal"] / "link.png"),
        )
    }
    expected["rgba.png"] = texture(5) / 255.0  # the colour channels, not the (zero) alpha
    expected["palette.png"] = texture(1) // 64 * 85 / 255.0  # its four palette colours
    for name, values in expected.items():
        np.testing.assert_allclose(image(name), values, atol=2e-4, err_msg=name)  # grey weights sum to 0.9999
    np.testing.assert_allclose(image("animated.gif"), 50 / 255.0, atol=TOLERANCE)  # the first frame
    np.testing.assert_allclose(image("huge.jpg"), 90 / 255.0, atol=2 / 255.0)


def test_cmyk_jpeg_decodes_to_its_rgb_colour(hostile):
    folders, _, _ = hostile
    rgb = decode_file(str(folders["normal"] / "cmyk.jpg")).numpy()
    assert rgb.shape == (SIZE, SIZE, 3)
    np.testing.assert_allclose(rgb.mean(axis=(0, 1)) * 255, CMYK_AS_RGB, atol=3)


def test_one_decoder_pipeline_matches_the_mixed_one(hostile):
    """Files that all use tf.io take the pure-graph path; it must give what the switch gives."""
    _, collection, by_name = hostile
    common = [by_name[name] for name in ("upper.JPG", "upper.PnG", "rgba.png", "palette.png", "animated.gif")]
    mixed = model_inputs(collection, np.arange(len(collection)))[common]
    np.testing.assert_array_equal(model_inputs(collection, common), mixed)


def test_listing_is_sorted_and_survives_the_symlink_loop(hostile):
    folders, _, _ = hostile
    files, skipped = list_image_files(folders["normal"])
    assert files == sorted(files)
    assert len(files) == len({os.path.realpath(path) for path in files})
    loop = next(entry for entry in skipped if entry["path"].endswith("loop"))
    assert loop["reason"] == f"folder already listed (it resolves to {os.path.realpath(folders['normal'])})"
