import cv2
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from data.phantom import make_phantom, render_slice

SIZE = 64


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(40, 40, size=SIZE, seed=0)


@pytest.fixture(scope="module")
def lesion_free(phantom):
    """The abnormal slices rendered again without their lesions."""
    return np.stack(
        [render_slice(0, 1, i, SIZE, with_lesion=False)[0] for i in range(40)]
    )


def test_shapes_labels_and_ids(phantom):
    assert phantom.images.shape == phantom.masks.shape == (80, SIZE, SIZE)
    assert phantom.images.dtype == phantom.masks.dtype == np.uint8
    assert phantom.labels.dtype == np.int64
    assert phantom.labels.tolist() == [0] * 40 + [1] * 40
    assert phantom.ids[0] == "phantom/normal/00000" and phantom.ids[-1] == "phantom/abnormal/00039"
    assert phantom.skipped == [] and len(phantom) == 80


def test_same_seed_same_bytes_other_seed_other_images(phantom):
    again = make_phantom(40, 40, size=SIZE, seed=0)
    assert np.array_equal(again.images, phantom.images)
    assert np.array_equal(again.masks, phantom.masks)
    other = make_phantom(40, 40, size=SIZE, seed=1)
    assert not np.array_equal(other.images, phantom.images)


def test_slices_are_stable_per_id(phantom):
    """Asking for fewer images returns the same images under the same ids."""
    fewer = make_phantom(3, 2, size=SIZE, seed=0)
    positions = [phantom.ids.index(i) for i in fewer.ids]
    assert np.array_equal(fewer.images, phantom.images[positions])
    assert np.array_equal(fewer.masks, phantom.masks[positions])


@pytest.mark.parametrize("size", [32, 128])
def test_sizes_are_honoured(size):
    small = make_phantom(2, 2, size=size, seed=0)
    assert small.images.shape == small.masks.shape == (4, size, size)
    assert small.masks[2:].any(axis=(1, 2)).all()


def test_masks_are_binary_empty_for_normals_and_inside_the_brain(phantom):
    assert set(np.unique(phantom.masks).tolist()) <= {0, 1}
    assert not phantom.masks[:40].any()
    assert phantom.masks[40:].any(axis=(1, 2)).all()
    for i in range(40):
        brain = render_slice(0, 1, i, SIZE)[2]
        assert not (phantom.masks[40 + i].astype(bool) & ~brain).any()


def test_masks_sit_where_the_lesion_changed_the_image(phantom, lesion_free):
    changed = phantom.images[40:] != lesion_free
    masks = phantom.masks[40:].astype(bool)
    # The soft lesion edge may change a few pixels just outside the mask, nothing farther away.
    near = np.stack([cv2.dilate(m.astype(np.uint8), np.ones((7, 7), np.uint8)) for m in masks])
    assert not (changed & ~near.astype(bool)).any()
    assert changed[masks].mean() > 0.9


def test_normal_anatomy_does_not_depend_on_the_label():
    """An abnormal slice's anatomy is drawn exactly as a normal's (only its random streams differ)."""
    normal = make_phantom(30, 0, size=SIZE, seed=0).images
    anatomy = np.stack([render_slice(0, 1, i, SIZE, with_lesion=False)[0] for i in range(30)])
    assert roc_auc_score([0] * 30 + [1] * 30, np.concatenate([normal, anatomy]).mean((1, 2))) == (
        pytest.approx(0.5, abs=0.2)
    )


def test_lesions_span_hard_to_easy(phantom, lesion_free):
    """Sizes and contrasts range from a few pixels at ~5% change to large, strong lesions."""
    masks = phantom.masks[40:].astype(bool)
    areas = masks.sum(axis=(1, 2)) * (128 / SIZE) ** 2  # in pixels at 128x128
    before, after = lesion_free.astype(float), phantom.images[40:].astype(float)
    contrast = np.array(
        [abs(after[i][m].mean() - before[i][m].mean()) / before[i][m].mean() for i, m in enumerate(masks)]
    )
    assert areas.min() < 100 and areas.max() > 600  # radius ~3 px .. ~15 px at 128
    assert contrast.min() < 0.12 and contrast.max() > 0.5


@pytest.mark.parametrize("draw", ["test", "dev"])
def test_brightness_alone_does_not_tell_the_classes_apart(draw):
    """No shortcut: 200 + 200 slices, where chance AUROC has a std of ~0.03."""
    phantom = make_phantom(200, 200, size=64, seed=0, draw=draw)
    assert roc_auc_score(phantom.labels, phantom.images.mean(axis=(1, 2))) == pytest.approx(0.5, abs=0.06)


def test_dev_draw_shares_no_slice_with_the_test_draws():
    dev = make_phantom(60, 20, size=32, seed=0, draw="dev")
    tests = [make_phantom(60, 20, size=32, seed=seed) for seed in (0, 1, 2)]
    dev_slices = {image.tobytes() for image in dev.images}
    assert len(dev_slices) == 80 and not any(image.tobytes() in dev_slices for test in tests for image in test.images)
    assert dev.ids[0] == "phantom-dev/normal/00000"
