"""The report in a real browser: Debian's chromium, headless, offline.

``.ci/run`` installs chromium and sets ``CI=1`` (and ``SIMPLEBITS_REQUIRE_BROWSER=1``) so that CI
fails instead of skipping when the browser is missing; elsewhere these tests skip without it. The
screenshot lands in ``tests/artifacts/`` for people to look at.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from PIL import Image

from simplebits_audit import testbeds

from ..helpers import CLI, REQUIRED

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
EVIL = "<script>alert(1)</script>"
EVIL_FILE = "<script>alert(1)"  # file names cannot hold "/"


@pytest.fixture(autouse=True)
def _browser_present() -> None:
    if CHROMIUM is None:
        if REQUIRED:
            pytest.fail("chromium is not installed, and CI (or SIMPLEBITS_REQUIRE_BROWSER=1) requires the browser tests")
        pytest.skip("needs Debian's chromium (apt-get install chromium)")

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=15000",
]


def chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, url], capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """``simplebits explain`` on two testbed images, one with a hostile file name and class name."""
    root = tmp_path_factory.mktemp("browser")
    data = testbeds.load("digits-on-photos", "test", n=2, seed=1)
    model = torch.jit.script(testbeds.load_classifier("digits-on-photos"))
    torch.jit.save(model, str(root / "model.ts"))
    paths = [root / f"{EVIL_FILE}.png", root / "plain.png"]
    for path, img in zip(paths, data.images):
        Image.fromarray((img.permute(1, 2, 0) * 255).round().byte().numpy()).save(path)
    (root / "labels.txt").write_text("\n".join([f"zero {EVIL}", *[str(d) for d in range(1, 10)]]))
    out = root / "out"
    res = subprocess.run(
        [*CLI, "--quiet", "explain", *map(str, paths), "--model", str(root / "model.ts"), "--labels", str(root / "labels.txt"),
         "--target", "0", "--baselines", "ig,occlusion", "--steps", "20", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert res.returncode == 0, res.stderr
    return out / "report.html"


def test_every_figure_renders_without_console_output(report, tmp_path):
    res = chromium(report.as_uri(), tmp_path / "profile", "--dump-dom")
    body = re.search(r"<body[^>]*>", res.stdout)
    assert body, res.stderr[-2000:]
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(0)))
    assert int(attrs["data-figures"]) == 2 * 3
    assert attrs["data-figures-rendered"] == attrs["data-figures"]
    assert attrs["data-errors"] == ""
    console = [line for line in res.stderr.splitlines() if "CONSOLE" in line]
    assert console == [], console


def test_hostile_strings_render_as_text(report, tmp_path):
    dom = chromium(report.as_uri(), tmp_path / "profile", "--dump-dom").stdout
    assert "&lt;script&gt;alert(1).png" in dom  # the file name, shown as text
    assert "zero &lt;script&gt;alert(1)&lt;/script&gt;" in dom  # the class name, shown as text
    assert "<script>alert(1)" not in dom  # never as an element


def test_screenshot(report, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    chromium(report.as_uri(), tmp_path / "profile", "--window-size=1300,1600", f"--screenshot={shot}")
    with Image.open(shot) as im:
        assert im.size == (1300, 1600)
        colours = im.convert("RGB").resize((65, 80)).getcolors(65 * 80)
        assert colours is not None and len(colours) > 50  # a rendered page, not a blank one


@pytest.mark.slow
def test_audit_report_renders(tmp_path):
    out = tmp_path / "audit"
    res = subprocess.run(
        [*CLI, "--quiet", "audit", "shortcut", "--model", "testbed:shortcut", "--testbed-n", "40", "--limit", "4",
         "--steps", "5", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert res.returncode == 0, res.stderr
    page = chromium((out / "report.html").as_uri(), tmp_path / "profile", "--dump-dom")
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', re.search(r"<body[^>]*>", page.stdout).group(0)))
    assert attrs["data-figures"] == attrs["data-figures-rendered"] == "2"  # confusion matrix, per-class bits
    assert attrs["data-errors"] == ""
    assert [line for line in page.stderr.splitlines() if "CONSOLE" in line] == []
    assert "Where the retained information sits" in page.stdout  # the shortcut paragraph
    ARTIFACTS.mkdir(exist_ok=True)
    chromium((out / "report.html").as_uri(), tmp_path / "profile2", "--window-size=1300,1600", f"--screenshot={ARTIFACTS / 'audit.png'}")


@pytest.mark.slow
def test_train_report_renders(tmp_path):
    out = tmp_path / "train"
    res = subprocess.run(
        [*CLI, "--quiet", "train", "blended-digits", "--budget", "1,0.3", "--epochs", "1", "--batch-size", "16", "--testbed-n", "32",
         "--val-n", "16", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert res.returncode == 0, res.stderr
    page = chromium((out / "report.html").as_uri(), tmp_path / "profile", "--dump-dom")
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', re.search(r"<body[^>]*>", page.stdout).group(0)))
    assert attrs["data-figures"] == attrs["data-figures-rendered"] == "1"  # the accuracy-bits curve
    assert attrs["data-errors"] == ""
    assert [line for line in page.stderr.splitlines() if "CONSOLE" in line] == []
    assert page.stdout.count('alt="simplified, budget') == 2 * 8  # 8 examples per run
    ARTIFACTS.mkdir(exist_ok=True)
    chromium((out / "report.html").as_uri(), tmp_path / "profile2", "--window-size=1300,1400", f"--screenshot={ARTIFACTS / 'train.png'}")
