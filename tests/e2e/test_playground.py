"""The playground at / in a real headless browser (Debian's chromium driven by Playwright) against the whole service
of conftest.py: a user's way from the key and a picture to a playing video, cancel, the API's errors, a phone, the
artist's own keyframes, and the two phases (keyframes first, then the video through the ones kept).

Screenshots go to test-artifacts/playground/ at the repo root (PAINTS_UNDO_TEST_ARTIFACTS replaces test-artifacts/).
"""

import io
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import FAST_SETTINGS, JOB_DEADLINE, KEYS, SLOW_SETTINGS, Stack, job, submit, wait_status
from PIL import Image, ImageDraw
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

pytestmark = pytest.mark.timeout(1800)

CHROMIUM = shutil.which("chromium")
ARTIFACTS = Path(os.environ.get("PAINTS_UNDO_TEST_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts"))
SCREENSHOTS = ARTIFACTS / "playground"
KEY = KEYS["erin"]
WAIT_MS = JOB_DEADLINE * 1000  # for what a job does
PAGE_MS = 60_000  # for what the page does by itself: generous, for a busy machine
expect.set_options(timeout=PAGE_MS)
PHONE = {"width": 390, "height": 844}

PROGRESS = "() => document.querySelector('#job-progress').value"
KEYFRAME_SHOWN = "() => [...document.querySelectorAll('#keyframes img')].some(i => i.complete && i.naturalWidth > 0)"
KEYFRAMES_SHOWN = "() => [...document.querySelectorAll('#keyframes img')].every(i => i.complete && i.naturalWidth > 0)"
VIDEO_PLAYING = """() => {
  const video = document.querySelector('#video');
  return video.readyState >= 2 && video.currentTime > 0 && !video.paused;
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH: `make browser` installs Debian's")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"], headless=True
        )
        yield browser
        browser.close()


@contextmanager
def playground(browser: Browser, stack: Stack, **options: Any) -> Iterator[Page]:
    """The page in a fresh tab; fails the test on an uncaught script error or a Content-Security-Policy report."""
    context = browser.new_context(**{"viewport": {"width": 1280, "height": 900}, **options})
    context.set_default_timeout(PAGE_MS)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on("console", lambda message: "Content Security Policy" in message.text and problems.append(message.text))
    try:
        page.goto(stack.api_url)
        expect(page.get_by_role("button", name="Make the timelapse")).to_be_enabled()  # the settings form is built
        yield page
        assert not problems, problems
    finally:
        context.close()


@pytest.fixture
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    with playground(browser, stack) as page:
        yield page


def picture() -> bytes:
    """A small illustration-like PNG: a sky, a hill and a sun."""
    image = Image.new("RGB", (160, 160), (180, 210, 240))
    draw = ImageDraw.Draw(image)
    draw.ellipse((-40, 100, 200, 260), fill=(90, 160, 90))
    draw.ellipse((100, 20, 140, 60), fill=(250, 200, 60))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def sketch(name: str, stage: int) -> dict[str, Any]:
    """An earlier state of picture() as a file to give the page: 0 the sky alone, 1 with the hill, 2 with the sun."""
    image = Image.new("RGB", (160, 160), (180, 210, 240))
    draw = ImageDraw.Draw(image)
    if stage >= 1:
        draw.ellipse((-40, 100, 200, 260), outline=(90, 160, 90), width=3)
    if stage >= 2:
        draw.ellipse((100, 20, 140, 60), outline=(250, 200, 60), width=3)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return {"name": name, "mimeType": "image/png", "buffer": buffer.getvalue()}


def record_submissions(page: Page) -> list[bytes]:
    """The multipart bodies of the page's POST /v1/jobs, as it sends them."""
    forms: list[bytes] = []

    def record(route: Route) -> None:
        if route.request.method == "POST":
            forms.append(route.request.post_data_buffer)
        route.continue_()

    page.route("**/v1/jobs", record)
    return forms


def sent_settings(form: bytes) -> dict[str, Any]:
    found = re.search(rb'name="settings"\r\n\r\n(.*?)\r\n--', form)
    return json.loads(found.group(1)) if found else {}


def keyframe_parts(form: bytes) -> list[str]:
    """The file names of the form's `keyframe` parts, in the order sent."""
    return [name.decode() for name in re.findall(rb'name="keyframe"; filename="([^"]*)"', form)]


def enter_key(page: Page, key: str = KEY) -> None:
    page.get_by_label("API key").fill(key)
    page.keyboard.press("Tab")  # leaving the field saves the key and lists its jobs


def fill_settings(page: Page, settings: dict[str, Any]) -> None:
    page.locator("#settings summary").click()
    for name, value in settings.items():
        field = page.locator(f"[name={name}]")
        if field.evaluate("field => field.tagName") == "SELECT":  # its options' values are JSON
            field.select_option(json.dumps(value))
            continue
        text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        field.fill(text)


def choose_picture(page: Page) -> None:
    page.locator("#picture").set_input_files({"name": "hill.png", "mimeType": "image/png", "buffer": picture()})


def drop_picture(page: Page) -> None:
    """As a file dragged from another window and dropped on the picture's box."""
    transfer = page.evaluate_handle(
        """bytes => {
          const transfer = new DataTransfer();
          transfer.items.add(new File([new Uint8Array(bytes)], "hill.png", { type: "image/png" }));
          return transfer;
        }""",
        list(picture()),
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})


def start_job(page: Page, settings: dict[str, Any], give_picture: Callable[[Page], None] = choose_picture) -> str:
    """Like a user: the key, a picture, the settings; submit. The new job's id, as the page shows it."""
    enter_key(page)
    give_picture(page)
    expect(page.get_by_alt_text("The chosen picture")).to_be_visible()
    fill_settings(page, settings)
    page.get_by_role("button", name="Make the timelapse").click()
    expect(page.locator("#job-id")).to_have_text(re.compile(r"job_[0-9a-f]{28}"))
    return page.locator("#job-id").inner_text()


def expect_error(page: Page, error: dict[str, str]) -> None:
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page.locator("#error-code")).to_have_text(error["code"])
    expect(page.locator("#error-message")).to_have_text(error["message"])


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=path, full_page=True)
    print(f"screenshot: {path}")
    return path


def test_a_picture_becomes_a_playing_video(page: Page, stack: Stack) -> None:
    settings = {"width": 256, "height": 256, "undo_steps": [400, 800], "keyframe_steps": 30, "video_steps": 6}
    forms: list[bytes] = []

    def record(route: Route) -> None:
        forms.append(route.request.post_data_buffer)
        route.continue_()

    page.route("**/v1/jobs", record)  # the multipart body as the page sends it
    job_id = start_job(page, settings)
    assert picture() in forms[0]
    sent = re.search(rb'name="settings"\r\n\r\n(.*?)\r\n--', forms[0]).group(1)
    assert json.loads(sent) == settings  # only the fields changed from their defaults

    first = page.wait_for_function(f"() => {{ const p = ({PROGRESS})(); return p > 0 && p < 1 && p }}", timeout=WAIT_MS)
    page.wait_for_function(f"first => ({PROGRESS})() > first", arg=first.json_value(), timeout=WAIT_MS)
    page.wait_for_function(KEYFRAME_SHOWN, timeout=WAIT_MS)
    screenshot(page, "job-running.png")

    page.wait_for_function(VIDEO_PLAYING, timeout=WAIT_MS)
    expect(page.locator("#job-status")).to_have_text("succeeded")
    expect(page.locator("#job-progress")).to_have_js_property("value", 1)
    expect(page.locator("#keyframes img")).to_have_count(2)
    link = page.get_by_role("link", name=re.compile("^Download video"))
    screenshot(page, "job-finished.png")

    with stack.client("erin") as client:
        done = job(client, job_id)
    assert done["status"] == "succeeded"
    assert {name: done["settings"][name] for name in settings} == settings
    video_url = next((o["url"] for o in done.get("outputs", []) if o["kind"] == "video"), done["video"]["url"])
    assert urlsplit(link.get_attribute("href")).path == urlsplit(video_url).path
    assert httpx.get(link.get_attribute("href")).content[4:8] == b"ftyp"  # the link downloads the MP4


def test_a_running_job_is_canceled_from_the_page(page: Page, stack: Stack) -> None:
    job_id = start_job(page, SLOW_SETTINGS, give_picture=drop_picture)
    page.wait_for_function(f"() => ({PROGRESS})() > 0", timeout=WAIT_MS)  # it renders

    page.get_by_role("button", name="Cancel", exact=True).click()

    expect(page.locator("#job-status")).to_have_text("canceled", timeout=WAIT_MS)
    expect(page.get_by_role("button", name="Cancel", exact=True)).to_be_hidden()
    with stack.client("erin") as client:
        assert job(client, job_id)["status"] == "canceled"


def test_a_dropped_event_stream_resumes_after_the_last_event_seen(page: Page, stack: Stack) -> None:
    """The first stream's body, as the service sent it, is cut after the first keyframe: the page reconnects with
    that event's id as Last-Event-ID and gets the rest."""
    last_event_ids: list[str | None] = []
    cut_at: list[str] = []

    def cut_after_the_first_keyframe(route: Route) -> None:
        last_event_ids.append(route.request.headers.get("last-event-id"))
        if len(last_event_ids) > 1:
            return route.continue_()
        messages = route.fetch(timeout=WAIT_MS).text().split("\n\n")  # the whole stream: until the job ends
        kept = messages[: next(i for i, m in enumerate(messages) if "event: job.keyframe" in m) + 1]
        cut_at.append(re.search(r"^id: (.+)$", kept[-1], re.MULTILINE).group(1))
        route.fulfill(headers={"content-type": "text/event-stream"}, body="\n\n".join(kept) + "\n\n")

    page.route("**/v1/jobs/*/events", cut_after_the_first_keyframe)
    start_job(page, FAST_SETTINGS)

    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=WAIT_MS)
    assert last_event_ids == [None, *cut_at]
    expect(page.locator("#keyframes img")).to_have_count(len(FAST_SETTINGS["undo_steps"]))
    page.wait_for_function(VIDEO_PLAYING, timeout=WAIT_MS)


def test_the_apis_errors_are_shown_as_its_messages(page: Page, stack: Stack) -> None:
    with stack.client(None) as client:
        refused = client.get("/v1/jobs", headers={"Authorization": "Bearer not-a-key-0123456789"}).json()["error"]
    enter_key(page, "not-a-key-0123456789")
    expect_error(page, refused)

    # Out of range: the browser refuses it, and nothing is sent.
    submissions = []
    page.on("request", lambda request: request.method == "POST" and submissions.append(request.url))
    enter_key(page)
    choose_picture(page)
    fill_settings(page, {"keyframe_steps": 500})
    page.get_by_role("button", name="Make the timelapse").click()
    assert page.locator("[name=keyframe_steps]").evaluate("input => input.validity.rangeOverflow")

    # What only the API can check: its answer is shown.
    with stack.client("erin") as client:
        invalid = submit(client, {"undo_steps": [400, 400]}).json()["error"]
    page.locator("[name=keyframe_steps]").fill("50")  # back to its default: not sent
    page.locator("[name=undo_steps]").fill("400, 400")
    page.get_by_role("button", name="Make the timelapse").click()
    expect_error(page, invalid)
    expect(page.locator("#job")).to_be_hidden()
    assert submissions == [f"{stack.api_url}/v1/jobs"]


def test_on_a_phone_a_finished_job_opens_from_the_recent_jobs(browser: Browser, stack: Stack) -> None:
    with stack.client("erin") as client:
        job_id = submit(client, FAST_SETTINGS).json()["id"]
        assert wait_status(client, job_id, "succeeded", "failed")["status"] == "succeeded"

    with playground(browser, stack, viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2) as page:
        enter_key(page)
        page.reload()  # the key is kept in the tab, and only there
        expect(page.get_by_label("API key")).to_have_value(KEY)
        assert page.evaluate("localStorage.length + document.cookie.length") == 0
        page.locator(".recent-job", has_text=job_id).click()
        expect(page.locator("#job-id")).to_have_text(job_id)
        page.wait_for_function(VIDEO_PLAYING, timeout=WAIT_MS)
        expect(page.locator("#keyframes img")).to_have_count(len(FAST_SETTINGS["undo_steps"]))
        assert page.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]
        screenshot(page, "phone.png")


def test_two_phases_keyframes_first_then_the_video_through_the_ones_kept(page: Page, stack: Stack) -> None:
    forms = record_submissions(page)
    first_id = start_job(page, {**FAST_SETTINGS, "stop_after": "keyframes"})

    # Phase 1 ends with its keyframes, each with a checkbox, and no video.
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=WAIT_MS)
    boxes = page.get_by_role("checkbox", name=re.compile(r"^Keep the keyframe \d+ steps back$"))
    expect(boxes).to_have_count(len(FAST_SETTINGS["undo_steps"]))
    page.wait_for_function(KEYFRAMES_SHOWN)
    expect(page.locator("#result")).to_be_hidden()
    assert page.locator("#video").get_attribute("src") is None
    shown = page.locator("#keyframes li").evaluate_all("items => items.map(item => Number(item.dataset.undoStep))")
    assert shown == [800, 400]  # blankest first: the earliest state of the picture first
    make_video = page.get_by_role("button", name="Make the video from the chosen keyframes")
    expect(make_video).to_be_disabled()
    boxes.nth(0).check()
    boxes.nth(1).check()
    screenshot(page, "two-phase-keyframes.png")

    # Phase 2: the same picture and the checked keyframes, earliest first; the page follows the new job.
    make_video.click()
    expect(page.locator("#job-id")).not_to_have_text(first_id)
    expect(page.locator("#job-id")).to_have_text(re.compile(r"job_[0-9a-f]{28}"))
    second_id = page.locator("#job-id").inner_text()
    page.wait_for_function(VIDEO_PLAYING, timeout=WAIT_MS)
    expect(page.locator("#job-status")).to_have_text("succeeded")
    expect(page.locator("#pick")).to_be_hidden()
    screenshot(page, "two-phase.png")

    assert len(forms) == 2 and picture() in forms[1]
    assert keyframe_parts(forms[1]) == ["keyframe-800.png", "keyframe-400.png"]
    assert sent_settings(forms[1]) == {k: v for k, v in FAST_SETTINGS.items() if k != "undo_steps"}
    with stack.client("erin") as client:
        first, second = job(client, first_id), job(client, second_id)
    assert first["video"] is None and first["outputs"] == [] and len(first["keyframes"]) == 2
    assert second["status"] == "succeeded" and second["supplied_keyframes"] == 2 and second["keyframes"] == []
    assert second["settings"]["undo_steps"] is None and second["settings"]["stop_after"] is None
    assert second["video"] is not None

    # After a reload the page no longer has the picture: it asks for it, then uses the one chosen.
    page.reload()
    page.locator(".recent-job", has_text=first_id).click()
    expect(page.locator("#job-id")).to_have_text(first_id)
    boxes.nth(0).check()
    make_video.click()
    expect(page.locator("#error-code")).to_have_text("picture_needed")
    expect(page.locator("#error-message")).to_contain_text("Choose that picture again")
    choose_picture(page)
    expect(page.get_by_role("alert")).to_be_hidden()
    make_video.click()
    expect(page.locator("#job-id")).not_to_have_text(first_id)
    third_id = page.locator("#job-id").inner_text()
    assert keyframe_parts(forms[2]) == ["keyframe-800.png"] and picture() in forms[2]
    with stack.client("erin") as client:
        third = wait_status(client, third_id, "succeeded", "failed")
    assert third["status"] == "succeeded" and third["supplied_keyframes"] == 1


def test_own_keyframes_turn_the_undo_steps_off_and_are_sent_in_the_order_shown(page: Page, stack: Stack) -> None:
    forms = record_submissions(page)
    enter_key(page)
    choose_picture(page)
    fill_settings(page, {k: v for k, v in FAST_SETTINGS.items() if k != "undo_steps"})
    undo_steps, stop_after = page.locator("[name=undo_steps]"), page.locator("[name=stop_after]")
    expect(undo_steps).to_be_enabled()

    chosen = [sketch("step10.png", 2), sketch("step2.png", 1), sketch("step1.png", 0)]
    page.locator("#own-keyframes").set_input_files(chosen)
    thumbnails = page.locator("#own-list img")
    order = "images => images.map(image => image.alt.split(', ').pop())"
    expect(thumbnails).to_have_count(3)
    assert thumbnails.evaluate_all(order) == ["step10.png", "step2.png", "step1.png"]  # as chosen
    expect(undo_steps).to_be_disabled()
    expect(stop_after).to_be_disabled()
    expect(page.locator(".setting.off .hint")).to_have_text(["Not used with your own keyframes."] * 2)

    page.get_by_role("button", name="Sort by file name").click()
    assert thumbnails.evaluate_all(order) == ["step1.png", "step2.png", "step10.png"]
    page.get_by_role("button", name="Remove step2.png").click()
    expect(thumbnails).to_have_count(2)
    page.mouse.move(0, 0)  # no hover in the screenshot
    screenshot(page, "own-keyframes.png")

    page.get_by_role("button", name="Make the timelapse").click()
    expect(page.locator("#job-id")).to_have_text(re.compile(r"job_[0-9a-f]{28}"))
    job_id = page.locator("#job-id").inner_text()
    assert keyframe_parts(forms[0]) == ["step1.png", "step10.png"]
    assert "undo_steps" not in sent_settings(forms[0]) and "stop_after" not in sent_settings(forms[0])
    with stack.client("erin") as client:
        made = job(client, job_id)
        assert made["supplied_keyframes"] == 2 and made["settings"]["undo_steps"] is None
        assert wait_status(client, job_id, "succeeded", "failed")["status"] == "succeeded"
    expect(page.locator("#downloads")).to_contain_text("through 2 of your own keyframes", timeout=WAIT_MS)

    page.get_by_role("button", name="Remove all").click()
    expect(thumbnails).to_have_count(0)
    expect(undo_steps).to_be_enabled()
    expect(stop_after).to_be_enabled()
