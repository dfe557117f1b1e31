"""The static leaderboard site (issue: see and use the results, item 3): one folder with every
table, plot, record and overlay, no external asset, loaded in a real headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess

import imageio.v3 as iio
import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    runner = CliRunner()
    for seed in (0, 1):
        result = runner.invoke(main, ["run", "--method", "none", "--budget", "4", "--seed", str(seed), "--profile",
                                      "smoke", "--quiet", "--out", str(root / f"run{seed}")])
        assert result.exit_code == 0, result.output
    board = root / "lb"
    assert runner.invoke(main, ["leaderboard", "add", str(root / "run0"), str(root / "run1"), "--root",
                                str(board)]).exit_code == 0
    out = root / "www"
    result = runner.invoke(main, ["leaderboard", "render", "--root", str(board), "--site", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_the_site_holds_its_tables_plots_records_and_overlays_and_nothing_external(site):
    page = (site / "index.html").read_text()
    assert page.count("<table>") >= 3 and "rel. count error" in page and "Every record (2)" in page
    links = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert links and not [link for link in links if re.match(r"[a-z]+:|//", link)]  # relative only
    for link in links:
        if link.startswith("#"):  # the table of contents: an anchor on the page
            assert f'id="{link[1:]}"' in page, link
        else:
            assert (site / link).is_file(), link
    assert sum(link.endswith(".overlay.png") for link in links) == 2
    assert sum(link.endswith(".png") and "plots/" in link for link in links) >= 3


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium); "
                                             "CI installs it")
def test_the_site_renders_in_headless_chromium(site, tmp_path):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"]
    url = (site / "index.html").as_uri()
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    images = re.search(r'data-images="(\d+)" data-images-shown="(\d+)"', dom)
    assert images is not None, dom[:500]
    assert int(images.group(1)) >= 3 and images.group(1) == images.group(2)  # every figure decoded
    assert dom.count("<table>") >= 3
    shot = tmp_path / "site.png"
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1200,1600", url],
                   capture_output=True, timeout=120, check=True)
    pixels = iio.imread(shot)
    assert pixels.shape[0] == 1600 and np.std(pixels) > 10  # a page was painted, not a blank


def test_a_site_inside_the_leaderboard_folder_is_refused(site):
    board = site.parent / "lb"
    for inside in (board, board / "www"):
        result = CliRunner().invoke(main, ["leaderboard", "render", "--root", str(board), "--site", str(inside)])
        assert result.exit_code == 2 and "must lie outside the leaderboard folder" in result.output, result.output
        assert "Traceback" not in result.output
    assert not (board / "www").exists()
