"""The page at GET / in real Chromium (Debian's, driven by Playwright for Python), against the
real binaries on loopback. Each test drives its own server and clients (stack.py).

Cases: two pages on two clients see the same messages in the same order; markup in a message
is text and runs nothing; stopping the server shows "reconnecting"; kill -9 and a restart show
the gap; a page cut for a while shows every message once; 320 px wide works from the keyboard,
in light and dark (and writes the screenshot); send-to-paint latency over 1,000 messages, with
at most 1,000 messages kept in the DOM."""

import asyncio
import http.client
import json
import os
import shutil
import statistics
import time

import pytest
from playwright.async_api import async_playwright, expect
from stack import CHROMIUM, CHROMIUM_ARGS, OUT_DIR, REPO, CutProxy, Stack

WAIT_MS = 15_000  # one asynchronous change to show in the page
LIVE = "live"


def run(test):
    """Runs an async test body with a Chromium and a Stack, both closed afterwards."""

    async def body():
        stack = Stack()
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                await test(browser, stack)
            finally:
                await browser.close()
                stack.close()

    asyncio.run(body())


def send_http(addr, author, text, headers=None):
    """POST /sendMessage; returns the sendTime."""
    conn = http.client.HTTPConnection(addr, timeout=10)
    body = json.dumps({"author": author, "text": text})
    conn.request("POST", "/sendMessage", body, {"Content-Type": "application/json", **(headers or {})})
    r = conn.getresponse()
    data = json.loads(r.read())
    conn.close()
    assert r.status == 200, data
    return data["sendTime"]


async def open_page(browser, addr, **context):
    page = await (await browser.new_context(**context)).new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.errors = errors
    await page.goto(f"http://{addr}/")
    await expect(page.locator("#state")).to_have_attribute("data-state", LIVE, timeout=WAIT_MS)
    return page


async def texts(page):
    return await page.locator("#messages li.message .text").all_text_contents()


async def wait_texts(page, expected):
    await expect(page.locator("#messages li.message .text")).to_have_text(expected, timeout=WAIT_MS)


def test_two_pages_on_two_clients_see_every_message_in_the_same_order():
    async def test(browser, stack):
        stack.start_server()
        a, b = stack.start_client(), stack.start_client()
        pages = [await open_page(browser, a), await open_page(browser, b)]
        sent = []
        for i in range(10):
            page = pages[i % 2]
            if i == 0 or i == 1:
                await page.fill("#author", f"page{i % 2}")
            await page.fill("#text", f"hello {i}")
            await page.press("#text", "Enter")
            sent.append(f"hello {i}")
            # Sends are sequential across the pages: each one is in before the next.
            await expect(page.locator("#messages li.message .text").last).to_have_text(f"hello {i}", timeout=WAIT_MS)
        for page in pages:
            await wait_texts(page, sent)
        rows = [
            await page.locator("#messages li.message").evaluate_all(
                "items => items.map(i => [i.dataset.id, i.querySelector('.author').textContent,"
                " i.querySelector('time').dateTime])"
            )
            for page in pages
        ]
        assert rows[0] == rows[1], "the same messages, ids and times, in the same order"
        times = [r[2] for r in rows[0]]
        assert times == sorted(times) and len(set(times)) == 10
        assert [r[1] for r in rows[0]] == ["page0", "page1"] * 5
        assert await pages[0].input_value("#author") == "page0", "the author stays in the form"
        reloaded = await open_page(browser, a, storage_state=await pages[0].context.storage_state())
        assert await reloaded.input_value("#author") == "page0", "and is remembered"
        assert all(not p.errors for p in pages), [p.errors for p in pages]

    run(test)


def test_markup_in_a_message_is_text_and_runs_nothing():
    async def test(browser, stack):
        stack.start_server()
        addr = stack.start_client(MESSENGER_TRACE_UI_URL="http://localhost:16686/trace/")
        page = await open_page(browser, addr)
        dialogs, requests = [], []
        page.on("dialog", lambda d: dialogs.append(d.message))
        page.on("request", lambda r: requests.append(r.url))
        hostile = "<img src=x onerror=alert(1)>"
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        send_http(addr, "<b>mallory</b>", hostile, {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
        await wait_texts(page, [hostile])
        item = page.locator("#messages li.message").last
        assert await item.locator(".author").text_content() == "<b>mallory</b>"
        assert await page.locator("#messages img, #messages b").count() == 0, "no element from the text"
        link = item.locator("a.trace")
        assert await link.get_attribute("href") == f"http://localhost:16686/trace/{trace_id}"
        await page.evaluate("() => new Promise(r => requestAnimationFrame(() => setTimeout(r, 50)))")
        assert not dialogs, dialogs
        assert not [u for u in requests if u.endswith("/x")], requests
        assert not page.errors, page.errors

    run(test)


def test_stopping_the_server_shows_reconnecting():
    async def test(browser, stack):
        stack.start_server()
        addr = stack.start_client()
        page = await open_page(browser, addr)
        stack.server.stop()
        await expect(page.locator("#state")).to_have_attribute("data-state", "reconnecting", timeout=WAIT_MS)
        await expect(page.locator("#state")).to_have_text("reconnecting…")
        # A restarted in-memory server has a new history (a new epoch): back, with the gap said.
        stack.restart_server()
        await expect(page.locator("#state")).to_have_attribute("data-state", "gap", timeout=WAIT_MS)

    run(test)


def test_kill9_and_restart_shows_the_gap_then_the_new_messages():
    async def test(browser, stack):
        stack.start_server()
        addr = stack.start_client()
        page = await open_page(browser, addr)
        send_http(addr, "k", "before")
        await wait_texts(page, ["before"])
        stack.kill9_server()
        await expect(page.locator("#state")).to_have_attribute("data-state", "reconnecting", timeout=WAIT_MS)
        stack.restart_server()
        await expect(page.locator("#state")).to_have_attribute("data-state", "gap", timeout=WAIT_MS)
        await expect(page.locator("#state")).to_contain_text("messages were lost here")
        await expect(page.locator("#messages li.gap")).to_have_text("messages were lost here")
        await expect(page.locator("#messages li.message .text")).to_have_text(["before"])
        await asyncio.to_thread(send_http, addr, "k", "after")
        await wait_texts(page, ["before", "after"])
        assert await page.locator("#messages li").evaluate_all("l => l.map(i => i.className)") == [
            "message",
            "gap",
            "message",
        ]

    run(test)


def test_a_page_cut_for_a_while_shows_every_message_once_after_resuming():
    async def test(browser, stack):
        stack.start_server()
        addr = stack.start_client()
        proxy = CutProxy(addr)
        try:
            page = await open_page(browser, proxy.addr)
            expected = [f"m{i}" for i in range(5)]
            for t in expected:
                send_http(addr, "c", t)
            await wait_texts(page, expected)
            proxy.set_cut(True)
            await expect(page.locator("#state")).to_have_attribute("data-state", "reconnecting", timeout=WAIT_MS)
            missed = [f"while cut {i}" for i in range(20)]
            for t in missed:
                send_http(addr, "c", t)
            await page.wait_for_timeout(1500)  # stays cut across a few reconnect attempts
            proxy.set_cut(False)
            await expect(page.locator("#state")).to_have_attribute("data-state", LIVE, timeout=WAIT_MS)
            send_http(addr, "c", "after")
            await wait_texts(page, expected + missed + ["after"])
            assert await page.locator("#messages li.gap").count() == 0
        finally:
            proxy.close()

    run(test)


def test_320px_wide_from_the_keyboard_in_light_and_dark():
    async def test(browser, stack):
        stack.start_server()
        addr = stack.start_client()
        colours = {}
        for scheme in ("light", "dark"):
            page = await open_page(browser, addr, viewport={"width": 320, "height": 480}, color_scheme=scheme)
            colours[scheme] = await page.evaluate("getComputedStyle(document.body).backgroundColor")
            if scheme == "dark":
                break
            assert await page.evaluate("document.activeElement.id") == "author", "focus starts in the form"
            await page.keyboard.type("ada")
            await page.keyboard.press("Tab")
            await page.keyboard.type("a long word: " + "x" * 120)
            await page.keyboard.press("Enter")
            send_http(addr, "a-very-long-author-name-without-any-breaks-at-all", "hello from 320 px")
            send_http(addr, "grace", "short")
            await expect(page.locator("#messages li.message")).to_have_count(3, timeout=WAIT_MS)
            widths = await page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
            assert widths[0] <= 320 and widths[1] == 320, f"horizontal scroll: {widths}"
            for selector in ("#author", "#text", "#send button", "#state"):
                box = await page.locator(selector).bounding_box()
                assert box and box["x"] >= 0 and box["x"] + box["width"] <= 320, (selector, box)
            OUT_DIR.mkdir(parents=True, exist_ok=True)
            shot = OUT_DIR / "page-320px.png"
            await page.screenshot(path=str(shot))
            if os.environ.get("MESSENGER_UPDATE_SCREENSHOT"):
                shutil.copy(shot, REPO / "client" / "src" / "page" / "screenshot-320px.png")
        assert colours["light"] != colours["dark"], colours

    run(test)


@pytest.mark.timeout(300)
def test_send_to_paint_latency_over_1000_messages_and_the_dom_keeps_1000():
    """From the HTTP send returning to the message being in the page's DOM, both on the test's
    clock: a MutationObserver in the page calls back into the test (a Playwright binding), and
    the test stamps the callback on arrival with the same monotonic clock that stamped the send."""

    async def test(browser, stack):
        stack.start_server()
        addr = stack.start_client()
        page = await open_page(browser, addr)
        loop = asyncio.get_running_loop()
        arrived = {}

        def painted(_source, text):
            stamp = loop.time()
            fut = arrived.get(text)
            if fut and not fut.done():
                fut.set_result(stamp)

        await page.expose_binding("messengerPainted", painted)
        await page.evaluate(
            """() => new MutationObserver(records => {
                for (const r of records) for (const n of r.addedNodes)
                    if (n.classList && n.classList.contains("message"))
                        window.messengerPainted(n.querySelector(".text").textContent);
            }).observe(document.getElementById("messages"), {childList: true})"""
        )
        conn = http.client.HTTPConnection(addr, timeout=10)

        def send(text):
            conn.request("POST", "/sendMessage", json.dumps({"author": "bench", "text": text}))
            r = conn.getresponse()
            r.read()
            assert r.status == 200
            return time.monotonic()  # the clock loop.time() reads

        latencies = []
        total = 1010
        for i in range(total):
            text = f"n{i}"
            arrived[text] = loop.create_future()
            sent = await asyncio.to_thread(send, text)
            got = await asyncio.wait_for(arrived[text], WAIT_MS / 1000)
            if i >= total - 1000:
                latencies.append(got - sent)
        conn.close()
        latencies.sort()
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
        early = sum(1 for x in latencies if x < 0)  # painted before the HTTP answer was read
        report = {"messages": len(latencies), "painted_before_answer": early, "p50_ms": round(p50, 2), "p99_ms": round(p99, 2), "max_ms": round(latencies[-1] * 1000, 2)}
        print(f"\nsend-to-paint over {len(latencies)} messages: {report}")
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        (OUT_DIR / "send-to-paint.json").write_text(json.dumps(report) + "\n")
        count = await page.locator("#messages li").count()
        assert count == 1000, f"{count} messages in the DOM"
        assert await page.locator("#messages li.message .text").first.text_content() == f"n{total - 1000}"
        assert p99 < 1000, report

    run(test)
