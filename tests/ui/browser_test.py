#!/usr/bin/env python3
"""The management web UI in headless Chromium (Selenium 4), against a running
broker's HTTP port. Run by tests/ui_browser.rs; by hand:

    "$(scripts/ui-env.sh)" tests/ui/browser_test.py --port 15672

Each step drives the UI as a person would (clicks, forms, hash routes) and
waits for what it expects with an explicit deadline (WebDriverWait), never a
sleep. After every step the page must show no error banner and the browser
console must have no SEVERE entry (the wrong-password login's 401 excepted).
A failing step is reported with a screenshot, and the steps that need it are
skipped; the others still run. Exit status 0 only if every step passed.
A screenshot of each page goes to --screenshots (target/ui-screenshots/).
"""

import argparse
import json
import os
import sys
import tempfile
import time
import traceback

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

WAIT = 15  # seconds for any one thing to appear
QUEUE = "ui-q1"
PAYLOAD = "hello-from-ui"


def sel(test, **attrs):
    """CSS selector of a data-test element, optionally with data-* attributes."""
    extra = "".join(f'[data-{k}="{v}"]' for k, v in attrs.items())
    return f'[data-test="{test}"]{extra}'


class Step(Exception):
    pass


class UI:
    def __init__(self, driver, base, shots):
        self.d = driver
        self.base = base
        self.shots = shots
        self.shot_no = 0

    # ---- waiting and finding

    def wait(self, cond, what, timeout=WAIT):
        w = WebDriverWait(self.d, timeout, poll_frequency=0.2,
                          ignored_exceptions=(StaleElementReferenceException,))
        try:
            return w.until(cond)
        except TimeoutException:
            raise Step(f"timed out after {timeout} s waiting for {what}{self.banner_note()}") from None

    def banner_note(self):
        try:
            b = self.d.find_element(By.ID, "error-banner")
            if b.is_displayed():
                return f" (error banner: {self.d.find_element(By.ID, 'error-text').text.strip()})"
        except WebDriverException:
            pass
        return ""

    def el(self, css, what=None):
        return self.wait(EC.visibility_of_element_located((By.CSS_SELECTOR, css)), what or css)

    def gone(self, css, what=None):
        self.wait(lambda d: not d.find_elements(By.CSS_SELECTOR, css), what or f"{css} to go away")

    def text_is(self, css, expected, what=None):
        def check(d):
            els = d.find_elements(By.CSS_SELECTOR, css)
            return els and els[0].is_displayed() and els[0].text.strip() == expected
        self.wait(check, what or f'{css} to read "{expected}"')

    def text_has(self, css, part, what=None):
        def check(d):
            els = d.find_elements(By.CSS_SELECTOR, css)
            return els and els[0].is_displayed() and part in els[0].text
        self.wait(check, what or f'{css} to contain "{part}"')

    def click(self, css, what=None):
        self.wait(EC.element_to_be_clickable((By.CSS_SELECTOR, css)), what or css).click()

    def type(self, css, text):
        """Replaces a field's text by typing, as a person would (select all, type)."""
        e = self.el(css)
        e.send_keys(Keys.CONTROL, "a")
        e.send_keys(Keys.DELETE)
        if text:
            e.send_keys(text)

    def choose(self, css, value):
        Select(self.el(css)).select_by_value(value)

    def nav(self, name, title):
        self.click(sel(f"nav-{name}"))
        self.text_has(sel("page-title"), title, f"the {title} page")

    def shot(self, name):
        """A screenshot of the whole page (the window grown to fit it, then restored)."""
        self.shot_no += 1
        path = os.path.join(self.shots, f"{self.shot_no:02d}-{name}.png")
        size = self.d.get_window_size()
        try:
            height = self.d.execute_script("return document.documentElement.scrollHeight")
            self.d.set_window_size(size["width"], min(max(height + 140, size["height"]), 6000))
            self.d.save_screenshot(path)
        finally:
            self.d.set_window_size(size["width"], size["height"])
        return path

    def no_error_banner(self):
        b = self.d.find_element(By.ID, "error-banner")
        if b.is_displayed():
            raise Step(f"error banner shown: {self.d.find_element(By.ID, 'error-text').text.strip()}")


# ---- the steps: (name, needs, allowed console substrings, function)

STEPS = []


def step(needs=(), allow=()):
    def register(f):
        STEPS.append((f.__name__, tuple(needs), tuple(allow), f))
        return f
    return register


@step()
def login_page(ui, args):
    ui.d.get(ui.base + "/")
    ui.el(sel("login-form"), "the login form")
    ui.shot("login")


@step(needs=["login_page"], allow=["/api/whoami", "401"])
def wrong_password(ui, args):
    ui.type(sel("login-username"), "guest")
    ui.type(sel("login-password"), "not-the-password")
    ui.click(sel("login-submit"))
    ui.text_has(sel("login-error"), "Login failed", "the login error")
    ui.shot("login-failed")


@step(needs=["login_page"])
def login(ui, args):
    ui.type(sel("login-username"), "guest")
    ui.type(sel("login-password"), "guest")
    ui.click(sel("login-submit"))
    ui.text_is(sel("current-user"), "guest", "the logged-in user in the header")


@step(needs=["login"])
def overview(ui, args):
    ui.nav("overview", "Overview")
    ui.text_has(sel("overview-node"), "@", "the node name")
    node = ui.el(sel("overview-node")).text
    if not node.startswith(args.node_prefix):
        raise Step(f"node {node!r} does not start with {args.node_prefix!r}")
    ui.el(sel("chart-queued") + " svg", "the queued messages chart")
    ui.el(sel("chart-rates") + " svg", "the message rates chart")
    ui.el(sel("total-queues"), "the queue count")
    ui.shot("overview")


@step(needs=["login"])
def channels_page(ui, args):
    ui.nav("channels", "Channels")
    ui.el(sel("channels-table"), "the channels table")
    if args.expect_connection:
        ui.el(sel("channel-row"), "a channel of the test's AMQP client")
    ui.shot("channels")


@step(needs=["login"])
def connections_page(ui, args):
    ui.nav("connections", "Connections")
    ui.el(sel("connections-table"), "the connections table")
    ui.el("#connections-table th", "the connections table heading")
    ui.shot("connections")
    if not args.expect_connection:
        return
    # The test's AMQP client: open its page, close it with a reason.
    ui.click(sel("connection-link"), "a link to the test's AMQP connection")
    ui.el(sel("connection-facts"), "the connection's details")
    ui.shot("connection")
    ui.type(sel("close-reason"), "closed by the UI test")
    ui.click(sel("close-connection"))
    ui.text_has(sel("page-title"), "Connections", "the connections list after closing")
    ui.text_has(sel("info-text"), "closed", "the closed notice")
    ui.wait(lambda d: (d.find_element(By.ID, "refresh").click() or True)
            and not d.find_elements(By.CSS_SELECTOR, sel("connection-row")),
            "the closed connection to leave the list")


@step(needs=["login"])
def create_queue(ui, args):
    ui.nav("queues", "Queues")
    ui.el(sel("queues-table"), "the queues table")
    ui.type(sel("add-queue-name"), QUEUE)
    ui.choose(sel("add-queue-durable"), "true")
    ui.click(sel("add-queue-submit"))
    ui.el(sel("queue-row", name=QUEUE), f"{QUEUE} in the queues table")
    ui.shot("queues")


@step(needs=["create_queue"])
def queue_list_controls(ui, args):
    # Filter (plain, then regex), sort by name both ways, page size.
    ui.type(sel("queues-filter"), "q1")
    ui.el(sel("queue-row", name=QUEUE), "the queue with a matching filter")
    ui.type(sel("queues-filter"), "^zz")
    ui.click(sel("queues-regex"))
    ui.gone(sel("queue-row", name=QUEUE), "the queue to be filtered out by regex ^zz")
    ui.type(sel("queues-filter"), "")
    ui.click(sel("queues-regex"))
    ui.el(sel("queue-row", name=QUEUE), "the queue with no filter")
    ui.click(sel("queues-sort-name"))
    ui.text_has(sel("queues-sort-name"), "▼", "the name column sorted descending")
    ui.el(sel("queue-row", name=QUEUE), "the queue sorted descending")
    ui.click(sel("queues-sort-name"))
    ui.text_has(sel("queues-sort-name"), "▲", "the name column sorted ascending")
    ui.choose(sel("queues-page-size"), "20")
    ui.el(sel("queue-row", name=QUEUE), "the queue with 20 a page")
    ui.choose(sel("queues-page-size"), "100")


@step(needs=["create_queue"])
def publish_default_exchange(ui, args):
    ui.nav("exchanges", "Exchanges")
    ui.el(sel("exchanges-table"), "the exchanges table")
    ui.wait(EC.element_to_be_clickable((By.LINK_TEXT, "(AMQP default)")), "the (AMQP default) link").click()
    ui.text_is(sel("exchange-name"), "(AMQP default)", "the default exchange's page")
    ui.type(sel("publish-routing-key"), QUEUE)
    ui.type(sel("publish-payload"), PAYLOAD)
    ui.click(sel("publish-submit"))
    ui.text_is(sel("publish-result"), "Message published.", "the published notice")
    ui.shot("exchange")
    # Unroutable: RabbitMQ's other answer.
    ui.type(sel("publish-routing-key"), "no-such-queue")
    ui.click(sel("publish-submit"))
    ui.text_is(sel("publish-result"), "Message published, but not routed.", "the not-routed notice")


@step(needs=["publish_default_exchange"])
def queue_shows_message(ui, args):
    ui.nav("queues", "Queues")
    cell = sel("queue-row", name=QUEUE) + " " + sel("queue-messages")

    def one(d):
        els = d.find_elements(By.CSS_SELECTOR, cell)
        if els and els[0].text.strip() == "1":
            return True
        d.find_element(By.ID, "refresh").click()
        return False
    ui.wait(one, f"{QUEUE} to show 1 message")
    ui.shot("queues-1-message")


@step(needs=["create_queue"])
def queue_page(ui, args):
    ui.nav("queues", "Queues")
    ui.click(sel("queue-row", name=QUEUE) + " " + sel("queue-link"))
    ui.text_is(sel("queue-title"), QUEUE, "the queue's page")
    ui.el(sel("consumers-table"), "the consumers table")
    ui.el(sel("bindings-table-destination"), "the bindings table")
    ui.text_has(sel("bindings-table-destination"), "(Default exchange binding)", "the default binding")
    # Add a binding from amq.direct and see it listed.
    ui.type(sel("queue-bind-source"), "amq.direct")
    ui.type(sel("queue-bind-routing-key"), "ui-key")
    ui.click(sel("queue-bind-submit"))
    ui.el(sel("binding-row", key="ui-key"), "the new binding")


@step(needs=["queue_page", "queue_shows_message"])
def get_message(ui, args):
    ui.text_is(sel("queue-detail-messages"), "1", "the queue's page to show 1 message")
    ui.choose(sel("get-ackmode"), "ack_requeue_false")
    ui.choose(sel("get-encoding"), "auto")
    ui.type(sel("get-count"), "1")
    ui.click(sel("get-submit"))
    ui.text_is(sel("get-payload"), PAYLOAD, "the payload")
    ui.text_has(sel("get-remaining"), "0 messages remaining", "the remaining count")
    ui.text_is(sel("queue-detail-messages"), "0", "the queue to be empty after an automatic ack")
    ui.shot("queue-get")


@step(needs=["queue_page"])
def purge_and_delete(ui, args):
    ui.click(sel("queue-purge"))
    ui.click(sel("queue-purge-confirm"))
    ui.text_has(sel("info-text"), "purged", "the purged notice")
    ui.text_is(sel("queue-detail-messages"), "0", "an empty queue")
    ui.click(sel("queue-delete"))
    ui.click(sel("queue-delete-confirm"))
    ui.text_has(sel("info-text"), "deleted", "the deleted notice")
    ui.text_has(sel("page-title"), "Queues", "the queues list after deleting")
    ui.el(sel("queues-table"), "the queues table")
    ui.gone(sel("queue-row", name=QUEUE), f"{QUEUE} to leave the list")


@step(needs=["login"])
def admin_users(ui, args):
    ui.nav("admin", "Admin")
    ui.el(sel("users-table"), "the users table")
    ui.el(sel("user-row", name="guest"), "guest in the users table")
    ui.type(sel("add-user-name"), "ui-user")
    ui.type(sel("add-user-password"), "ui-user-pw")
    ui.type(sel("add-user-tags"), "management")
    ui.click(sel("add-user-submit"))
    ui.el(sel("user-row", name="ui-user"), "ui-user in the users table")
    ui.shot("admin")
    row = sel("user-row", name="ui-user")
    ui.click(row + " " + sel("user-delete"))
    ui.click(row + " " + sel("user-delete-confirm"))
    ui.gone(row, "ui-user to leave the users table")


@step(needs=["login"])
def admin_vhosts_and_limits(ui, args):
    ui.nav("admin", "Admin")
    ui.el(sel("vhosts-table"), "the vhosts table")
    ui.type(sel("add-vhost-name"), "ui-vhost")
    ui.type(sel("add-vhost-description"), "made by the UI test")
    ui.click(sel("add-vhost-submit"))
    ui.el(sel("vhost-row", name="ui-vhost"), "ui-vhost in the vhosts table")
    # Permissions for guest there.
    ui.wait(lambda d: "ui-vhost" in [o.get_attribute("value") for o in Select(d.find_element(By.CSS_SELECTOR, sel("perm-vhost"))).options],
            "ui-vhost in the permission form")
    ui.choose(sel("perm-user"), "guest")
    ui.choose(sel("perm-vhost"), "ui-vhost")
    ui.click(sel("perm-submit"))
    ui.el(sel("permission-row", user="guest", vhost="ui-vhost"), "guest's permission in ui-vhost")
    # A vhost limit.
    ui.choose(sel("limit-kind"), "vhost")
    ui.choose(sel("limit-target"), "ui-vhost")
    ui.choose(sel("limit-name"), "max-queues")
    ui.type(sel("limit-value"), "10")
    ui.click(sel("limit-submit"))
    ui.el(sel("limit-row", kind="vhost", name="ui-vhost"), "the max-queues limit of ui-vhost")
    ui.shot("admin-vhosts")
    row = sel("vhost-row", name="ui-vhost")
    ui.click(row + " " + sel("vhost-delete"))
    ui.click(row + " " + sel("vhost-delete-confirm"))
    ui.gone(row, "ui-vhost to leave the vhosts table")


@step(needs=["login"])
def definitions(ui, args):
    ui.nav("definitions", "Definitions")
    ui.click(sel("definitions-download"))
    ui.text_has(sel("definitions-status"), "Downloaded", "the download notice")

    def downloaded(_):
        done = [f for f in os.listdir(args.downloads) if f.endswith(".json")]
        return done[0] if done else False
    name = ui.wait(downloaded, "the definitions file in the download folder")
    with open(os.path.join(args.downloads, name)) as f:
        defs = json.load(f)
    if not any(u.get("name") == "guest" for u in defs.get("users", [])):
        raise Step(f"the downloaded definitions have no guest user: {sorted(defs)}")
    # Upload a file that adds a vhost; it shows up in the vhost select.
    upload = os.path.join(args.downloads, "upload.json")
    with open(upload, "w") as f:
        json.dump({"vhosts": [{"name": "ui-defs-vhost"}]}, f)
    ui.d.find_element(By.CSS_SELECTOR, sel("definitions-file")).send_keys(upload)
    ui.click(sel("definitions-upload"))
    ui.text_has(sel("definitions-status"), "imported", "the imported notice")
    ui.wait(lambda d: "ui-defs-vhost" in [o.get_attribute("value") for o in Select(d.find_element(By.ID, "vhost-select")).options],
            "ui-defs-vhost in the vhost select")
    ui.shot("definitions")


@step(needs=["definitions"], allow=["/api/definitions", "400"])
def error_banner(ui, args):
    # An API error shows its reason in the banner, which can be dismissed.
    bad = os.path.join(args.downloads, "bad.json")
    with open(bad, "w") as f:
        f.write("this is not JSON")
    ui.d.find_element(By.CSS_SELECTOR, sel("definitions-file")).send_keys(bad)
    ui.click(sel("definitions-upload"))
    ui.text_has(sel("error-text"), "400", "the error banner with the API's status")
    ui.shot("error-banner")
    ui.click("#error-close")
    ui.wait(EC.invisibility_of_element_located((By.ID, "error-banner")), "the dismissed banner to go")


@step(needs=["login"])
def logout(ui, args):
    ui.click(sel("logout"))
    ui.el(sel("login-form"), "the login form after logging out")


# ---- running

def severe_logs(driver, allow):
    bad = []
    for e in driver.get_log("browser"):
        if e.get("level") != "SEVERE":
            continue
        msg = e.get("message", "")
        if allow and all(a in msg for a in allow):
            continue
        bad.append(msg)
    return bad


def make_driver(args):
    opts = webdriver.ChromeOptions()
    opts.binary_location = args.chromium
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1400,1000", "--no-first-run", "--no-default-browser-check",
              "--disable-extensions", "--lang=en-US", f"--user-data-dir={args.profile}"]:
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    opts.add_experimental_option("prefs", {
        "download.default_directory": args.downloads,
        "download.prompt_for_download": False,
        "safebrowsing.enabled": False,
    })
    driver = webdriver.Chrome(service=Service(args.chromedriver), options=opts)
    driver.set_page_load_timeout(30)
    return driver


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True, help="the broker's HTTP port")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--screenshots", default="target/ui-screenshots")
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    p.add_argument("--expect-connection", action="store_true",
                   help="an AMQP client is connected: check it is listed, then close it from the UI")
    p.add_argument("--node-prefix", default="", help="the node name must start with this")
    p.add_argument("--only", default="", help="comma-separated steps to run (and what they need)")
    args = p.parse_args()

    os.makedirs(args.screenshots, exist_ok=True)
    for f in os.listdir(args.screenshots):
        if f.endswith(".png"):
            os.remove(os.path.join(args.screenshots, f))
    scratch = tempfile.TemporaryDirectory(prefix="warren-ui-")
    args.downloads = os.path.join(scratch.name, "downloads")
    args.profile = os.path.join(scratch.name, "profile")
    os.makedirs(args.downloads)

    wanted = set(filter(None, args.only.split(",")))
    if wanted:
        needs = {n: ns for n, ns, _, _ in STEPS}
        todo = list(wanted)
        while todo:
            for n in needs.get(todo.pop(), ()):
                if n not in wanted:
                    wanted.add(n)
                    todo.append(n)

    started = time.monotonic()
    driver = make_driver(args)
    ui = UI(driver, f"http://{args.host}:{args.port}", args.screenshots)
    results = {}
    try:
        for name, needs, allow, f in STEPS:
            if wanted and name not in wanted:
                continue
            # A step whose actions all worked but left console errors or an
            # error banner fails without holding up the steps that need it.
            missing = [n for n in needs if results.get(n) not in ("ok", "noisy")]
            if missing:
                results[name] = "skipped"
                print(f"SKIP {name} (needs {', '.join(missing)})", flush=True)
                continue
            t0 = time.monotonic()
            try:
                f(ui, args)
            except Exception as e:  # noqa: BLE001: every failure is reported the same way
                results[name] = "FAILED"
                shot = ui.shot(f"FAILED-{name}")
                detail = str(e) if isinstance(e, Step) else traceback.format_exc()
                bad = severe_logs(driver, allow)
                if bad:
                    detail += "\n     browser console errors:\n       " + "\n       ".join(bad)
                print(f"FAIL {name}: {detail}\n     screenshot: {shot}", flush=True)
                continue
            problems = []
            if name not in ("login_page", "wrong_password", "logout"):
                try:
                    ui.no_error_banner()
                except Step as e:
                    problems.append(str(e))
            bad = severe_logs(driver, allow)
            if bad:
                problems.append("browser console errors:\n       " + "\n       ".join(bad))
            if problems:
                results[name] = "noisy"
                shot = ui.shot(f"FAILED-{name}")
                print(f"FAIL {name}: its actions worked, but: " + "\n     ".join(problems)
                      + f"\n     screenshot: {shot}", flush=True)
            else:
                results[name] = "ok"
                print(f"ok   {name} ({time.monotonic() - t0:.1f} s)", flush=True)
    finally:
        driver.quit()
        scratch.cleanup()
    failed = [n for n, r in results.items() if r != "ok"]
    print(f"UI steps: {len(results) - len(failed)} ok, "
          f"{sum(r in ('FAILED', 'noisy') for r in results.values())} failing, "
          f"{sum(r == 'skipped' for r in results.values())} skipped, in {time.monotonic() - started:.1f} s; "
          f"screenshots in {args.screenshots}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
