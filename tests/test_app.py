"""python -m restore.app: started on a free loopback port, driven through gradio_client and a browser."""

from __future__ import annotations

import io
import re
import shutil
import socket
import subprocess

import cv2
import numpy as np
import pytest
from rich.console import Console

pytest.importorskip("gradio", reason="the app extra is not installed: pip install -e '.[app]'")
from gradio_client import Client, handle_file  # noqa: E402

from restore.app import CLEAN, RESTORE, model_choices, serve  # noqa: E402
from restore.data.layout import SkimageSource  # noqa: E402
from restore.models.ship import WEIGHTS_DIR  # noqa: E402
from restore.predict import predict  # noqa: E402
from tests.helpers import compose_config  # noqa: E402

SHIPPED = WEIGHTS_DIR / "maxim1s_w32_cbsd432_blind.ckpt"  # the denoiser the page offers first
LOW_LIGHT = WEIGHTS_DIR / "maxim1s_w32_lol.ckpt"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def app():
    """The page with the shipped denoiser first in its list, and a client for it."""
    if not SHIPPED.is_file():
        pytest.skip(f"{SHIPPED} is missing: the app's tests restore with the shipped denoiser")
    page = serve(compose_config("app", f"port={free_port()}", "device=cpu"), block=False)
    url = f"http://127.0.0.1:{page.server_port}/"
    yield url, Client(url, verbose=False)
    page.close()


def label(client: Client) -> str:
    return client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/restore"]["parameters"][1][
        "parameter_default"
    ]


def photo_16bit(path) -> np.ndarray:
    """A 16-bit crop of a real photo, with values an 8-bit file could not hold."""
    rgb = SkimageSource("chelsea").read()[40:88, 100:164].astype(np.uint16) * 257 + 91  # 48x64
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return rgb


def test_the_page_restores_a_16_bit_png_exactly_as_predict_does(app, tmp_path):
    url, client = app
    assert label(client) == f"denoise: shipped, trained here ({SHIPPED.name})"
    source = tmp_path / "in" / "cat.png"
    source.parent.mkdir()
    photo_16bit(source)
    given = source.read_bytes()
    upload = handle_file(str(source))
    _, result, report = client.predict(upload, label(client), RESTORE, 0.5, False, api_name="/restore")
    # the upload is read, never written next to: the app keeps everything in its own folder
    assert source.read_bytes() == given and list(source.parent.iterdir()) == [source]
    predict(
        compose_config("predict", f"input={source}", f"output={tmp_path / 'out'}", f"ckpt={SHIPPED}", "device=cpu"),
        console=Console(file=io.StringIO()),
    )
    from_app = cv2.imread(result, cv2.IMREAD_UNCHANGED)
    from_predict = cv2.imread(str(tmp_path / "out" / "cat.png"), cv2.IMREAD_UNCHANGED)
    assert from_app.dtype == np.uint16 and from_app.shape == (48, 64, 3)
    np.testing.assert_array_equal(from_app, from_predict)
    assert "64x48, 16-bit" in report and re.search(r"\*\*time\*\*: \d+\.\d+ s", report)


def test_the_clean_photo_mode_scores_the_degraded_and_the_restored_photo(app, tmp_path):
    _, client = app
    source = tmp_path / "cat.png"
    photo_16bit(source)
    (before, after), _, report = client.predict(
        handle_file(str(source)), label(client), CLEAN, 0.5, False, api_name="/restore"
    )
    assert "gaussian_noise sigma=25" in report  # strength 0.5 of the task's [0, 50]
    degraded, restored = (float(v) for v in re.findall(r"\| (?:degraded|restored) \| ([\d.]+) \|", report))
    assert restored > degraded + 5  # the shipped denoiser at the noise level it was trained for
    assert cv2.imread(before).shape == cv2.imread(after).shape == (48, 64, 3)


def test_the_shipped_low_light_model_is_offered_and_its_clean_photo_mode_darkens_the_photo(app, tmp_path):
    _, client = app
    choices = {choice.label: choice for choice in model_choices(compose_config("app"))}
    low_light = f"lowlight: shipped, trained here ({LOW_LIGHT.name})"
    assert choices[low_light].overrides == (f"ckpt={LOW_LIGHT}",) and choices[low_light].task == "lowlight"
    source = tmp_path / "cat.png"
    photo_16bit(source)
    upload = handle_file(str(source))
    (before, after), _, report = client.predict(upload, low_light, CLEAN, 0.5, False, api_name="/restore")
    assert "low_light exposure=0.25" in report  # strength 0.5 of the task's exposure range [0.1, 0.4]
    degraded, restored = (float(v) for v in re.findall(r"\| (?:degraded|restored) \| ([\d.]+) \|", report))
    assert restored > degraded + 3
    assert cv2.imread(before).mean() < cv2.imread(after).mean()  # the degraded photo is the dark one


def test_a_bad_upload_gets_a_message_not_a_trace(app, tmp_path):
    _, client = app
    fake = tmp_path / "notes.png"
    fake.write_text("these are notes, not pixels")
    with pytest.raises(Exception, match="notes.png cannot be read as an image") as caught:
        client.predict(handle_file(str(fake)), label(client), RESTORE, 0.5, False, api_name="/restore")
    assert "Traceback" not in str(caught.value)


def test_the_page_renders_in_a_headless_browser(app, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium on PATH (apt-get install chromium): the page was not rendered in a browser")
    url, _ = app
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=20000"]
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=90).stdout
    assert "restore: before and after" in dom and "sample photos" in dom
    shot = tmp_path / "app.png"
    subprocess.run([*common, f"--screenshot={shot}", "--window-size=1280,900", url], capture_output=True, timeout=90)
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (900, 1280)
    assert image.std() > 10 and len(np.unique(image.reshape(-1, 3), axis=0)) > 50  # not a blank page


@pytest.mark.parametrize(
    "options, first",
    [
        (["model=identity"], "model=identity"),
        (["model=maxim_1s", "model.features=8", "model_task=deblur"], "model=maxim_1s"),
    ],
    ids=["identity", "preset-with-overrides"],
)
def test_the_documented_command_lines_start_the_page_with_their_model_first(tmp_path, options, first):
    import sys
    import time

    from tests.helpers import ROOT

    port = free_port()
    log = tmp_path / "app.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "restore.app", *options, f"port={port}", "device=cpu"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while "restore app: open" not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.5)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        assert label(client) == first
        source = tmp_path / "cat.png"
        rgb = photo_16bit(source)
        _, restored, _ = client.predict(handle_file(str(source)), first, RESTORE, 0.5, False, api_name="/restore")
        out_image = cv2.cvtColor(cv2.imread(restored, cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)
        assert out_image.shape == rgb.shape
        if first == "model=identity":
            assert np.array_equal(out_image, rgb)  # the identity model hands the photo back bit for bit
    finally:
        process.terminate()
        process.wait(timeout=30)


def png_header_only(path, width: int, height: int) -> None:
    """A PNG whose header says width x height, with one empty data chunk: what a huge upload
    looks like to a reader that stops at the header."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"") + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [12000, 40000])  # 144 megapixels; 1.6 gigapixels, past PIL's own limit
def test_an_upload_too_large_for_memory_is_refused_from_its_header_with_a_message(app, tmp_path, side):
    _, client = app
    huge = tmp_path / "huge.png"
    png_header_only(huge, side, side)
    with pytest.raises(Exception) as caught:
        client.predict(handle_file(str(huge)), label(client), RESTORE, 0.5, False, api_name="/restore")
    message = str(caught.value)
    assert "huge.png" in message and ("free memory" in message or "too large to restore" in message), message
    assert "Traceback" not in message


def resident_mib() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def test_four_clients_sending_twenty_restores_at_once_get_predicts_answers_and_memory_returns(app, tmp_path):
    """Four clients, five photos each, all sent at once: every answer is the file restore.predict
    writes for that photo, the page queues them (one restoration at a time), and the process's
    resident memory is back within 10% of its size before the burst."""
    from concurrent.futures import ThreadPoolExecutor

    url, first_client = app
    photos = []
    for i in range(5):
        rgb = (SkimageSource("astronaut").read()[40 * i : 40 * i + 48, 100:164]).copy()
        path = tmp_path / "photos" / f"photo{i}.png"
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        photos.append(path)
    predict(
        compose_config(
            "predict",
            f"input={tmp_path / 'photos'}",
            f"output={tmp_path / 'predicted'}",
            f"ckpt={SHIPPED}",
            "device=cpu",
        ),
        console=Console(file=io.StringIO()),
    )
    choice = label(first_client)
    first_client.predict(handle_file(str(photos[0])), choice, RESTORE, 0.5, False, api_name="/restore")  # warm
    idle = resident_mib()

    def send(client_index: int) -> list[tuple[int, str]]:
        client = Client(url, verbose=False)
        jobs = [
            (i, client.submit(handle_file(str(photos[i])), choice, RESTORE, 0.5, False, api_name="/restore"))
            for i in range(5)
        ]
        return [(i, job.result(timeout=600)[1]) for i, job in jobs]

    with ThreadPoolExecutor(4) as pool:
        answers = [answer for result in pool.map(send, range(4)) for answer in result]
    assert len(answers) == 20
    for i, restored in answers:
        expected = cv2.imread(str(tmp_path / "predicted" / f"photo{i}.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(cv2.imread(restored, cv2.IMREAD_UNCHANGED), expected), f"photo{i}"
    assert resident_mib() < 1.1 * idle, (resident_mib(), idle)
