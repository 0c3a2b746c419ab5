"""Reliability round 3 (issue 19), the core's part: groups that are not what they claim, the ensemble's
classification mode, downloads that hang, figures that draw what was not measured, small misuses."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest
import torch

from monai_equivariant.data.download import download_nodule_mnist3d, fetch_url
from monai_equivariant.groups import Group, get_group
from monai_equivariant.inferers import GroupEnsembleInferer
from monai_equivariant.layers import LiftingConv
from monai_equivariant.metrics import EquivarianceMetric, compute_equivariance
from monai_equivariant.transforms import GroupElement
from monai_equivariant.visualize import plot_equivariance_curves


def _powers(matrix, count: int) -> np.ndarray:
    elements = [np.eye(len(matrix))]
    for _ in range(count - 1):
        elements.append(np.asarray(matrix, dtype=np.float64) @ elements[-1])
    return np.stack(elements)


# --- item 3: integer but not orthogonal matrices, NaN matrices ------------------------------------------------
@pytest.mark.parametrize(
    "matrices",
    [
        _powers([[0, -1], [1, -1]], 3),  # closed under composition (M³ = I), integer, not orthogonal
        np.stack([np.eye(2), 2 * np.eye(2)]),  # a scale
        np.stack([np.eye(2), np.array([[1.0, 1.0], [0.0, 1.0]])]),  # a shear
    ],
    ids=["order-3-integer", "scale-2", "shear"],
)
def test_group_of_non_orthogonal_matrices_is_refused_naming_the_element(matrices):
    with pytest.raises(ValueError, match=r"element 1 .*not orthogonal"):
        Group("mine", matrices)


def test_group_with_a_nan_matrix_is_refused_naming_the_element():
    matrices = np.stack([np.eye(2), np.full((2, 2), np.nan)])
    with pytest.raises(ValueError, match="element 1 has non-finite entries"):
        Group("mine", matrices)


def test_group_with_a_repeated_element_is_refused():
    half_turn = -np.eye(2)
    with pytest.raises(ValueError, match="elements 1 and 2 are the same matrix"):
        Group("mine", np.stack([np.eye(2), half_turn, half_turn]))


def test_non_closed_group_is_refused_when_made_so_no_layer_or_transform_can_take_it():
    """A quarter turn without its powers: refused by Group itself (before, LiftingConv and GroupElement built
    with it and only the nets refused it)."""
    quarter = np.array([[0.0, -1.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match=r"not closed under composition: element 1 ∘ element 1"):
        Group("half_p4", np.stack([np.eye(2), quarter]))
    # the four powers make a group that layers and transforms take
    mine = Group("my_p4", _powers(quarter, 4))
    assert mine.is_grid and mine.order == 4
    LiftingConv(1, 2, mine)
    GroupElement(mine, 1)


@pytest.mark.parametrize("name", ["p4", "p4m", "D4h", "O", "Oh", "se2_12"])
def test_cayley_table_is_the_matrix_product(name):
    group = get_group(name)
    m = group.matrices
    products = np.einsum("aij,bjk->abik", m, m)
    np.testing.assert_allclose(products, m[group.cayley], atol=1e-9)


def test_large_sampled_rotation_groups_build_quickly():
    """The closure check runs when a group is made: it must not cost O(|G|³) memory (se2_360: 0.3 s)."""
    start = time.perf_counter()
    group = get_group("se2_360")
    assert group.cayley[1, 359] == 0 and time.perf_counter() - start < 30


# --- item 17: elements that are not integers --------------------------------------------------------------------
@pytest.mark.parametrize("element", [1.5, True, "1", None])
def test_group_element_must_be_an_integer_index(element):
    with pytest.raises(TypeError, match=r"integer index 0\.\.3"):
        GroupElement("p4", element)
    with pytest.raises(TypeError, match=r"integer index 0\.\.3"):
        get_group("p4").transform(torch.zeros(1, 1, 4, 4), element)


def test_group_element_accepts_numpy_and_tensor_integers():
    x = torch.arange(16.0).reshape(1, 4, 4)
    expected = GroupElement("p4", 1)(x)
    torch.testing.assert_close(GroupElement("p4", np.int64(1))(x), expected)
    torch.testing.assert_close(GroupElement("p4", torch.tensor(1))(x), expected)


# --- item 4: classification ensembles need (B, C) outputs ---------------------------------------------------------
def test_classification_ensemble_refuses_spatial_outputs():
    segmenter = torch.nn.Conv2d(1, 2, 3, padding=1)
    x = torch.randn(2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"mode='classification' averages \(B, C\) logits, got shape \(2, 2, 8, 8\)"):
        GroupEnsembleInferer("p4", mode="classification")(x, segmenter)
    classifier = torch.nn.Sequential(segmenter, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    assert GroupEnsembleInferer("p4", mode="classification")(x, classifier).shape == (2, 2)


# --- item 17: threshold=nan -------------------------------------------------------------------------------------
@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), "0.5", 1.5])
def test_equivariance_threshold_must_be_a_finite_probability(threshold):
    net = torch.nn.Conv2d(1, 1, 3, padding=1)
    with pytest.raises(ValueError, match="threshold must"):
        EquivarianceMetric(net, angles=(0.0, 90.0), threshold=threshold)
    with pytest.raises(ValueError, match="threshold must"):
        compute_equivariance(net, torch.randn(1, 1, 8, 8), angles=(0.0, 90.0), threshold=threshold)


# --- item 10: the curve figure draws only what was measured ------------------------------------------------------
def _dotted_lines(fig) -> list:
    return [line for line in fig.axes[0].get_lines() if line.get_linestyle() == ":"]


def test_curve_of_a_net_that_is_not_exact_at_90_degrees_is_not_repeated(tmp_path):
    angles = [0.0, 30.0, 45.0, 60.0, 90.0]
    curves = {"P4UNet": [1.0, 0.95, 0.94, 0.95, 1.0], "U-Net": [1.0, 0.8, 0.75, 0.78, 0.716]}
    fig = plot_equivariance_curves(angles, curves, path=tmp_path / "curve.png")
    dotted = _dotted_lines(fig)
    assert len(dotted) == 1 and dotted[0].get_color() == fig.axes[0].get_lines()[0].get_color()  # P4UNet's only
    assert dotted[0].get_xdata().max() == 360.0
    # the plain net's line ends where its measurement ends
    plain = [line for line in fig.axes[0].get_lines() if line.get_label() == "U-Net"]
    assert len(plain) == 1 and max(plain[0].get_xdata()) == 90.0


def test_curve_measured_without_the_period_is_not_repeated():
    fig = plot_equivariance_curves([0.0, 30.0, 60.0], {"P4UNet": [1.0, 0.9, 0.9]})
    assert not _dotted_lines(fig)


def test_error_curve_at_round_off_is_repeated():
    fig = plot_equivariance_curves([0.0, 45.0, 90.0], {"exact": [0.0, 0.3, 1e-7], "plain": [0.0, 0.3, 0.2]}, "mad")
    assert len(_dotted_lines(fig)) == 1


# --- item 11: a server that accepts and never answers -----------------------------------------------------------
@pytest.fixture
def silent_server():
    """A TCP server on loopback that accepts connections and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/file.npz"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_download_from_a_silent_server_times_out_and_names_the_url(silent_server, tmp_path, monkeypatch):
    monkeypatch.setattr(time, "sleep", lambda seconds: None)  # no back-off waits in the test
    start = time.perf_counter()
    expected = r"could not download http://127\.0\.0\.1:\d+/file\.npz \(2 attempts"
    with pytest.raises(ConnectionError, match=expected) as info:
        fetch_url(silent_server, tmp_path / "file.npz", progress=False, timeout=0.5, retries=2)
    assert "put it at" in str(info.value) and str(tmp_path / "file.npz") in str(info.value)
    assert time.perf_counter() - start < 20  # two 0.5 s waits, not forever
    assert not (tmp_path / "file.npz").exists()
    assert socket.getdefaulttimeout() is None  # the process-wide default is restored


def test_dataset_download_passes_its_timeout(silent_server, tmp_path, monkeypatch):
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    with pytest.raises(ConnectionError, match="could not download"):
        download_nodule_mnist3d(tmp_path, url=silent_server, md5="0" * 32, progress=False, timeout=0.5)


def test_fetch_url_refuses_a_bad_timeout(tmp_path):
    with pytest.raises(ValueError, match="timeout must be > 0"):
        fetch_url("http://127.0.0.1:1/x", tmp_path / "x", timeout=0)
