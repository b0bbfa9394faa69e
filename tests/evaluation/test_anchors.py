"""The published anchors that ship with the project and their names (evaluation/anchors.py)."""

from __future__ import annotations

import json

import pytest

from evaluation import anchors
from evaluation.results import read_results
from utils.cli import UsageError

PAPER = ("paper-tcm-large", "paper-tcm-middle", "paper-tcm-small")
FIELD = ("av1", "bpg", "hm", "jpeg", "jpeg2000", "vtm", "webp")


def test_every_set_has_the_papers_points_and_kodak_and_clic_the_fields_anchors():
    assert set(anchors.SETS) == {"kodak", "tecnick", "clic2020-professional"}
    assert anchors.names("tecnick") == list(PAPER)
    for name in ("kodak", "clic2020-professional"):
        got = set(anchors.names(name))
        assert set(PAPER) | set(FIELD) <= got
        assert {"compressai-bmshj2018-hyperprior", "compressai-mbt2018", "compressai-mbt2018-mean",
                "compressai-cheng2020-attn"} <= got
    assert {"paper-elic2022", "paper-minnen2020"} <= set(anchors.names("kodak"))


@pytest.mark.parametrize("path", sorted(anchors.ANCHORS_DIR.glob("*/*.json")), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_anchor_is_a_results_file_that_names_its_source(path):
    doc = read_results(path)  # CompressAI's format, checked in full
    source = json.loads(path.read_text())["source"]
    assert "https://github.com/" in source
    assert ("jmliu206/LIC_TCM" in source) == path.stem.startswith("paper-tcm")


def test_the_paper_points_are_the_published_ones():
    """TCM-Large on Kodak, CLIC and Tecnick as the authors list them (RD_data.md)."""
    expected = {"kodak": ([0.155, 0.194, 0.3, 0.443, 0.625, 0.88], [30.07, 30.85, 32.59, 34.33, 36.15, 38.07]),
                "clic2020-professional": ([0.12, 0.151, 0.221, 0.328, 0.451, 0.649],
                                          [31.84, 32.56, 34.13, 35.62, 37.13, 38.75]),
                "tecnick": ([0.128, 0.158, 0.221, 0.318, 0.428, 0.605], [32.06, 32.81, 34.35, 35.79, 37.23, 38.7])}
    for name, (bpp, psnr) in expected.items():
        res = read_results(anchors.ANCHORS_DIR / name / "paper-tcm-large.json")["results"]
        assert res["bpp"] == bpp and res["psnr-rgb"] == psnr


@pytest.mark.parametrize("folder, expected", [
    ("kodak", "kodak"), ("Kodak24", "kodak"), ("kodak/images", "kodak"), ("tecnick/rgb", "tecnick"),
    ("TESTIMAGES", "tecnick"), ("clic2020/professional_valid", "clic2020-professional"),
    ("clic_mobile_valid", None), ("photos", None),
])
def test_the_set_is_recognised_from_the_folder_names(tmp_path, folder, expected):
    path = tmp_path / "data" / folder
    path.mkdir(parents=True)
    assert anchors.recognise_set([path]) == expected
    (path / "a.png").write_bytes(b"")
    assert anchors.recognise_set([path / "a.png"]) == expected  # a file counts by its folder


def test_mixed_sets_are_not_recognised(tmp_path):
    (tmp_path / "kodak").mkdir()
    (tmp_path / "tecnick").mkdir()
    assert anchors.recognise_set([tmp_path / "kodak", tmp_path / "tecnick"]) is None
    assert anchors.recognise_set([tmp_path / "kodak", tmp_path / "kodak"]) == "kodak"


def test_names_resolve_in_the_set_evaluated_and_files_stay_files(tmp_path):
    kodak = tmp_path / "kodak"
    kodak.mkdir()
    mine = tmp_path / "mine.json"
    got = anchors.resolve(["vtm", str(mine), "paper-tcm-large"], None, [kodak])
    assert got == [anchors.ANCHORS_DIR / "kodak" / "vtm.json", mine, anchors.ANCHORS_DIR / "kodak" / "paper-tcm-large.json"]
    assert anchors.resolve(["paper-tcm-small"], "tecnick", [kodak]) == [anchors.ANCHORS_DIR / "tecnick" / "paper-tcm-small.json"]


def test_a_name_that_cannot_be_resolved_says_what_to_give(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    with pytest.raises(UsageError, match=r"--anchor vtm: cannot tell which data set .* give --anchor-set \(kodak, "):
        anchors.resolve(["vtm"], None, [photos])
    with pytest.raises(UsageError, match=r"--anchor vtm: no such built-in anchor for tecnick \(choose from "
                                         r"paper-tcm-large, paper-tcm-middle, paper-tcm-small, or give a results file\)"):
        anchors.resolve(["vtm"], "tecnick", [photos])
