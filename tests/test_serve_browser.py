"""A real ``singerid serve`` process on a free loopback port, driven by headless Chromium (Selenium)
through the web page's flows, and by the README's curl examples run verbatim."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
from serve_helpers import Server, write_voice

pytestmark = pytest.mark.slow
README = Path(__file__).parents[1] / "README.md"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def server(voice_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    srv = Server(voice_model, root / "cat", root / "server.log").wait_ready()
    yield srv
    srv.stop()


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver); browser test skipped")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=DriverService(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def _click_and_wait(driver, button_id: str, timeout: float = 120.0) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.find_element(By.ID, button_id).click()
    WebDriverWait(driver, timeout).until(lambda d: not d.find_element(By.ID, button_id).get_attribute("disabled")
                                         and not d.find_element(By.ID, "status").is_displayed())


def test_the_page_in_a_real_browser(server, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    files = {name: write_voice(tmp_path / f"{name}.wav", name.rstrip("0123456789"), seed, seconds)
             for name, seed, seconds in [("alto1", 101, 4.0), ("alto2", 102, 5.0), ("alto3", 103, 4.0), ("alto4", 104, 3.0),
                                         ("soprano1", 105, 4.0), ("soprano2", 106, 4.0)]}
    (tmp_path / "broken.wav").write_bytes(b"RIFF-this-is-not-audio")
    d = browser
    d.get(server.url + "/")
    assert d.title.startswith("singerid")
    d.save_screenshot(str(tmp_path / "1-loaded.png"))
    assert _errors(d) == []

    def compare(a, b) -> str:
        d.find_element(By.ID, "compare-a").send_keys(str(a))
        d.find_element(By.ID, "compare-b").send_keys(str(b))
        d.execute_script("document.getElementById('verdict-text').textContent = ''")
        _click_and_wait(d, "compare-btn")
        return d.find_element(By.ID, "verdict-text").text

    assert compare(files["alto1"], files["alto2"]) == "Same singer"
    assert "calibrated threshold" in d.find_element(By.ID, "verdict-explain").text
    d.save_screenshot(str(tmp_path / "2-same-singer.png"))
    assert compare(files["alto1"], files["soprano1"]) == "Different singers"
    d.save_screenshot(str(tmp_path / "3-different-singers.png"))

    for name, paths in [("Alto", [files["alto3"], files["alto4"]]), ("Soprano", [files["soprano2"]])]:
        d.find_element(By.ID, "enroll-name").clear()
        d.find_element(By.ID, "enroll-name").send_keys(name)
        d.find_element(By.ID, "enroll-files").send_keys("\n".join(str(p) for p in paths))
        _click_and_wait(d, "enroll-btn")
        assert f"Enrolled {name}" in d.find_element(By.ID, "enroll-result").text
    listed = [li.text for li in d.find_elements(By.CSS_SELECTOR, "#singers-list li")]
    assert len(listed) == 2 and listed[0].startswith("Alto (2 recordings") and listed[1].startswith("Soprano (1 recording")
    d.save_screenshot(str(tmp_path / "4-enrolled.png"))

    d.find_element(By.ID, "identify-file").send_keys(str(files["alto1"]))
    _click_and_wait(d, "identify-btn")
    assert d.find_element(By.ID, "identify-verdict").text == "Alto"
    ranked = [li.text for li in d.find_elements(By.CSS_SELECTOR, "#identify-list li")]
    assert ranked[0].startswith("Alto") and ranked[1].startswith("Soprano")
    d.save_screenshot(str(tmp_path / "5-identified.png"))

    points = d.find_elements(By.CSS_SELECTOR, "#map-svg circle.map-point")
    catalogue = _get(server.url + "/v1/map")["points"]
    assert len(points) == len(catalogue) == 3
    assert sorted(p.get_attribute("data-id") for p in points) == sorted(str(p["id"]) for p in catalogue)
    ActionChains(d).move_to_element(points[0]).perform()
    tip = d.find_element(By.ID, "map-tip").text
    assert tip.endswith(("Alto", "Soprano")) and ".wav" in tip
    points[0].click()
    assert d.find_element(By.ID, "player").get_attribute("src").endswith(f"/v1/recordings/{points[0].get_attribute('data-id')}/audio")
    d.save_screenshot(str(tmp_path / "6-map.png"))
    assert _errors(d) == []

    d.find_element(By.ID, "compare-a").send_keys(str(tmp_path / "broken.wav"))
    d.find_element(By.ID, "compare-b").send_keys(str(files["alto2"]))
    _click_and_wait(d, "compare-btn")
    error = d.find_element(By.ID, "error")
    assert error.is_displayed() and error.text.startswith("broken.wav: cannot read audio")
    d.save_screenshot(str(tmp_path / "7-bad-file.png"))
    # The browser reports the 422 answer itself as a failed load; nothing else may appear.
    assert all("422" in e for e in _errors(d))

    d.set_window_size(390, 844)
    d.get(server.url + "/")
    d.find_element(By.ID, "singers-list")
    assert d.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    d.save_screenshot(str(tmp_path / "8-phone.png"))
    assert _errors(d) == []


def _readme_curls() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## The service: `singerid serve`", 1)[1].split("\n## ", 1)[0]
    return [line for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S) for line in block.splitlines() if line.startswith("curl ")]


def test_the_readme_curl_examples_work_verbatim(voice_model, tmp_path):
    if not shutil.which("curl"):
        pytest.skip("curl is not installed; README curl examples not run")
    commands = _readme_curls()
    assert len(commands) >= 8
    for name, voice_name, seed in [("take1", "alto", 201), ("take2", "alto", 202), ("take3", "alto", 203)]:
        write_voice(tmp_path / f"{name}.wav", voice_name, seed)
    (tmp_path / "token.txt").write_text("readme-example-token-0123456789\n")
    srv = Server(voice_model, tmp_path / "cat", tmp_path / "server.log", "--token-file", str(tmp_path / "token.txt")).wait_ready()
    try:
        answers = []
        for cmd in commands:
            assert "http://127.0.0.1:8000/" in cmd
            out = subprocess.run(cmd.replace("http://127.0.0.1:8000", srv.url), shell=True, cwd=tmp_path,
                                 capture_output=True, text=True, timeout=120, check=True).stdout
            answers.append(out)
    finally:
        srv.stop()
    parsed = {cmd.split()[-1].rsplit("/", 1)[-1]: out for cmd, out in zip(commands, answers)}
    assert json.loads(parsed["verify"])["same_singer"] is True
    assert json.loads(parsed["enroll"])["recordings"] == 2
    assert json.loads(parsed["identify"])["singer"] == "Ann"
    assert json.loads(parsed["search"])["hits"][0]["singer"] == "Ann"
    assert len(json.loads(parsed["embed"])["windows"]) >= 1
    assert json.loads(parsed["singers"])["singers"][0]["name"] == "Ann"
    assert len(json.loads(parsed["map"])["points"]) == 2
    assert json.loads(parsed["Ann"]) == {"singer": "Ann", "removed": 2}
    assert 'singerid_requests_total{endpoint="/v1/enroll",method="POST",status="200"} 1' in parsed["metrics"]
