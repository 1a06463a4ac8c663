"""The web page at `/`, in headless Chromium (Debian's `chromium` and `chromedriver`, installed by `make browser`)
against the real stack: daphne serving the page and its collected static files (WhiteNoise), the relay and the
forwarder as processes, the embedded Kafka and Redis.

Screenshots land in the test's tmp_path and in tests/browser/artifacts/ (ignored by git); on a failure every
browser's screenshot and console log are saved there too.
"""

import json
import shutil
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait
from websockets.sync.client import connect as ws_connect

from chats.adapters import participant_of
from chats.bootstrap import mediator
from chats.runtime.embedded import free_port
from messaging_domain.commands import (
    CreateMessageCommand,
    DeleteMessageCommand,
    EditMessageCommand,
)
from tests.helpers import http_json, serving, started

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 30  # seconds for anything the page does once the stack is warm
FIRST_EVENT_WAIT = 60  # the forwarder joins its Kafka consumer group a few seconds after it connects
PASSWORD = "correct-horse-battery-9"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-proxy-server",
    "--window-size=1280,800",
]


# --- The stack ----------------------------------------------------------------------------------------------


class Site:
    """daphne serving the page (and its static files, collected first), with the relay and the forwarder."""

    def __init__(self, worker, tmp_path: Path) -> None:
        self.worker, self.port = worker, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {"DJANGO_SETTINGS_MODULE": "tests.browser.static_settings",
                    "BROWSER_TEST_STATIC_ROOT": str(tmp_path / "static")}
        collect = worker("collectstatic", "--noinput", "--verbosity", "0", **self.env)
        assert collect.process.wait(timeout=120) == 0, collect.output()
        self.start_web()

    def start_web(self) -> None:
        self.web = serving(self.worker, self.port, **self.env)


@pytest.fixture
def site(kafka, channel_layer, worker, tmp_path):
    site = Site(worker, tmp_path)
    relay = worker("relay_outbox")
    forwarder = worker("forward_events")
    started(relay, lambda: "connected to Kafka" in relay.output(), "the relay to connect to Kafka")
    started(forwarder, lambda: "connected to Kafka" in forwarder.output(), "the forwarder to connect to Kafka")
    yield site
    exits = {"relay_outbox": relay.stop(), "forward_events": forwarder.stop()}
    site.web.stop()
    assert exits == {"relay_outbox": 0, "forward_events": 0}, relay.output() + forwarder.output()


def call(site: Site, method: str, path: str, body: dict | None = None, token: str | None = None):
    """One API request from outside the browser; returns the status and the decoded JSON body."""
    return http_json(site.url, method, path, body, token, timeout=WAIT)


# --- The browsers -------------------------------------------------------------------------------------------


class Page:
    """One browser on the chat page, driven the way a person would: typing, Enter, clicks."""

    def __init__(self, driver: webdriver.Chrome, site: Site) -> None:
        self.driver, self.site = driver, site
        self.log: list[dict] = []

    def console(self) -> list[dict]:
        """Everything the browser logged so far (Chrome hands each entry out once)."""
        self.log.extend(self.driver.get_log("browser"))
        return self.log

    def script_errors(self) -> list[str]:
        """Uncaught exceptions and console.error calls; failed requests (the API's 4xx) are logged as "network"."""
        return [entry["message"] for entry in self.console() if entry.get("source") != "network"]

    def wait(self, condition, message: str, timeout: float = WAIT):
        # The page re-renders lists; a condition that caught an element being replaced is simply retried.
        waiting = WebDriverWait(self.driver, timeout, ignored_exceptions=(StaleElementReferenceException,))
        return waiting.until(lambda _: condition(), message)

    def find(self, css: str):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def shown(self, css: str) -> bool:
        return self.find(css).is_displayed()

    def attribute(self, css: str, name: str) -> str | None:
        return self.find(css).get_attribute(name)

    def fill(self, css: str, text: str) -> None:
        field = self.find(css)
        field.clear()
        field.send_keys(text)

    def sign_up(self, username: str) -> None:
        self.driver.get(self.site.url + "/")
        self.fill("#username", username)
        self.fill("#password", PASSWORD)
        self.find("#signup").click()
        self.wait(lambda: self.shown("#app") and self.find("#whoami").text == username, f"{username} signed in")

    def log_in(self, username: str) -> None:
        self.driver.get(self.site.url + "/")
        self.fill("#username", username)
        self.fill("#password", PASSWORD)
        self.find("#login").click()
        self.wait(lambda: self.shown("#app") and self.find("#whoami").text == username, f"{username} logged in")

    def wait_list_live(self) -> None:
        """The lobby socket is open and the list read after it opened has arrived."""
        self.wait(lambda: self.attribute("body", "data-lobby") == "live" and self.attribute("body", "data-list") == "loaded",
                  "the lobby to be live")

    def chat_titles(self) -> list[str]:
        return self.driver.execute_script(
            "return [...document.querySelectorAll('#chat-list .title')].map(node => node.textContent)")

    def create_chat(self, title: str, private: bool = False) -> None:
        self.fill("#new-chat-title", title)
        if self.find("#new-chat-private").is_selected() != private:
            self.find("#new-chat-private").click()
        self.find("#new-chat-title").send_keys(Keys.ENTER)

    def badges(self) -> dict[str, str]:
        """The unread badge of every chat in the list that has one: {title: count}."""
        return self.driver.execute_script(
            "return Object.fromEntries([...document.querySelectorAll('#chat-list .chat-link')]"
            ".filter(b => b.querySelector('.unread'))"
            ".map(b => [b.querySelector('.title').textContent, b.querySelector('.unread').textContent]))")

    def locked_titles(self) -> list[str]:
        """The chats of the list shown with a lock (private)."""
        return self.driver.execute_script(
            "return [...document.querySelectorAll('#chat-list .chat-link')].filter(b => b.querySelector('svg.lock'))"
            ".map(b => b.querySelector('.title').textContent)")

    def requests_to(self, path_end: str) -> int:
        """How many requests this document made to URLs ending so (resource timing lists every fetch)."""
        return self.driver.execute_script(
            "return performance.getEntriesByType('resource').filter(e => e.name.endsWith(arguments[0])).length",
            path_end)

    def open_members(self) -> None:
        if not self.driver.execute_script("return document.getElementById('members').open"):
            self.find("#members summary").click()

    def members(self) -> list[tuple[str, str]]:
        """(username, role) of the members panel, in its order."""
        return [tuple(pair) for pair in self.driver.execute_script(
            "return [...document.querySelectorAll('#member-list .member-item')]"
            ".map(li => [li.querySelector('.name').textContent, li.querySelector('.role').textContent])")]

    def add_member(self, username: str) -> None:
        self.fill("#add-member-name", username)
        self.find("#add-member-name").send_keys(Keys.ENTER)

    def open_chat(self, title: str) -> None:
        # The list arrives after the login: wait for the chat's entry instead of racing the first fetch,
        # and click inside the wait, so an entry replaced by a re-render is simply found again.
        def click_entry() -> bool:
            entries = self.driver.find_elements(By.XPATH, f"//*[@id='chat-list']//button[.//span[text()='{title}']]")
            if entries:
                entries[0].click()
            return bool(entries)

        self.wait(click_entry, f"chat {title!r} in the list")
        self.wait_chat_live(title)

    def wait_chat_live(self, title: str) -> None:
        self.wait(lambda: self.find("#chat-title").text == title and self.attribute("#chat", "data-state") == "live",
                  f"chat {title!r} to be open and live")

    def send(self, text: str) -> None:
        box = self.find("#message-text")
        box.send_keys(text)
        box.send_keys(Keys.ENTER)

    def messages(self) -> list[tuple[int, str]]:
        """(seq, text) of every message element, top to bottom."""
        return [tuple(pair) for pair in self.driver.execute_script(
            "return [...document.querySelectorAll('#messages [data-seq]')]"
            ".map(li => [Number(li.dataset.seq), li.querySelector('.text').textContent])")]

    def wait_messages(self, expected: list[tuple[int, str]], timeout: float = WAIT) -> None:
        self.wait(lambda: len(self.messages()) >= len(expected), f"{len(expected)} messages", timeout)
        assert self.messages() == expected

    def states(self) -> list[tuple[int, str, str]]:
        """(seq, text shown, mark) of every message element, top to bottom; mark: "deleted" (a tombstone),
        "edited" or ""."""
        return [tuple(row) for row in self.driver.execute_script(
            "return [...document.querySelectorAll('#messages [data-seq]')].map(li => [Number(li.dataset.seq),"
            " li.querySelector('.text').textContent, li.classList.contains('deleted') ? 'deleted'"
            " : li.querySelector('.edited-mark') ? 'edited' : ''])")]

    def actions(self, seq: int) -> list[str]:
        """The actions this user is offered on one message ("edit", "delete")."""
        return self.driver.execute_script(
            "return [...document.querySelectorAll(`#messages [data-seq='${arguments[0]}'] .meta .action`)]"
            ".map(b => b.dataset.action)", seq)

    def online(self) -> list[str]:
        """The names in the open chat's "online" list, in its order."""
        return self.driver.execute_script(
            "return [...document.querySelectorAll('#online .online-user')].map(li => li.textContent)")

    def typing(self) -> str:
        return self.find("#typing").text

    def edit(self, seq: int, text: str) -> None:
        """Edits one's own message inline: its "edit" action, the new text, Enter."""
        self.find(f"#messages [data-seq='{seq}'] .edit-message").click()
        box = self.find(f"#messages [data-seq='{seq}'] .edit-text")
        assert self.driver.switch_to.active_element == box  # the box has the focus, ready to type
        box.clear()
        box.send_keys(text)
        box.send_keys(Keys.ENTER)

    def delete(self, seq: int) -> None:
        """Deletes a message with its "delete" action, confirming the question."""
        self.find(f"#messages [data-seq='{seq}'] .delete-message").click()
        WebDriverWait(self.driver, WAIT).until(expected_conditions.alert_is_present()).accept()

    def chat_id(self) -> str:
        return self.driver.current_url.split("#", 1)[1]

    def error(self) -> tuple[str, str]:
        self.wait(lambda: self.shown("#error"), "an error message")
        return self.attribute("#error", "data-code"), self.find("#error-text").text

    def token(self) -> str:
        return self.driver.execute_script("return localStorage.getItem('chat.token')")

    def screenshot(self, name: str, tmp_path: Path) -> Path:
        path = tmp_path / f"{name}.png"
        assert self.driver.save_screenshot(str(path))
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(path, ARTIFACTS / path.name)
        return path


@pytest.fixture
def browser(request, tmp_path):
    """Opens Pages, each a separate headless Chromium with its own profile; a missing browser fails the test."""
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        pytest.fail("chromium and chromedriver are not installed: run `make browser` (Debian's chromium, chromium-driver)")
    site = request.getfixturevalue("site")
    pages: dict[str, Page] = {}

    def open_page(name: str) -> Page:
        options = Options()
        options.binary_location = chromium
        for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / f'profile-{name}'}"]:
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(executable_path=chromedriver, log_output=str(tmp_path / f"chromedriver-{name}.log"))
        pages[name] = Page(webdriver.Chrome(options=options, service=service), site)
        return pages[name]

    yield open_page
    for name, page in pages.items():
        try:
            console = "\n".join(f"{entry['level']} {entry.get('source')} {entry['message']}" for entry in page.console())
            (tmp_path / f"console-{name}.log").write_text(console)
            if getattr(request.node, "call_failed", True):
                ARTIFACTS.mkdir(exist_ok=True)
                page.driver.save_screenshot(str(ARTIFACTS / f"failed-{request.node.name}-{name}.png"))
                (ARTIFACTS / f"failed-{request.node.name}-{name}.log").write_text(console)
        finally:
            page.driver.quit()


# --- The tests ----------------------------------------------------------------------------------------------


def post_directly(username: str, chat_id: str, text: str) -> None:
    """Posts through the mediator in this process: the web server may be down meanwhile."""
    user = get_user_model().objects.get(username=username)
    mediator.handle_command(CreateMessageCommand(chat_id=uuid.UUID(chat_id), text=text, author=participant_of(user)))


def test_two_people_chat_live_and_a_reload_or_an_outage_shows_each_message_exactly_once(browser, site, tmp_path):
    ann, bob = browser("ann"), browser("bob")
    ann.sign_up("ann")
    bob.sign_up("bob")
    bob.wait_list_live()

    ann.create_chat("Lunch")
    ann.wait_chat_live("Lunch")
    bob.wait(lambda: bob.chat_titles() == ["Lunch"], "the new chat in bob's list, through the lobby", FIRST_EVENT_WAIT)

    ann.create_chat("LUNCH")
    code, text = ann.error()
    assert (code, text) == ("chat_title_taken", "A chat titled 'LUNCH' already exists.")
    assert ann.find("#error-code").text == "(chat_title_taken)"

    bob.open_chat("Lunch")
    ann.send("noon at the usual place?")
    bob.wait_messages([(1, "noon at the usual place?")])
    ann.wait_messages([(1, "noon at the usual place?")])
    assert ann.find("#message-text").get_attribute("value") == ""

    bob.driver.refresh()  # the token and the open chat (#<id>) survive; history, then the socket after seq 1
    bob.wait_chat_live("Lunch")
    bob.wait_messages([(1, "noon at the usual place?")])

    # The web server goes away; what is posted meanwhile arrives once it is back (reconnect with after_seq).
    site.web.stop()
    for page in (ann, bob):
        page.wait(lambda: page.attribute("#chat", "data-state") == "reconnecting", "the socket to notice the outage")
    chat_id = bob.driver.current_url.split("#", 1)[1]
    post_directly("ann", chat_id, "posted while the server was down")
    post_directly("ann", chat_id, "and one more")
    site.start_web()
    expected = [(1, "noon at the usual place?"), (2, "posted while the server was down"), (3, "and one more")]
    for page in (ann, bob):
        page.wait_chat_live("Lunch")
        page.wait_messages(expected)

    ann.send("see you there")
    expected.append((4, "see you there"))
    bob.wait_messages(expected)
    ann.wait_messages(expected)
    assert bob.screenshot("two-people-chatting", tmp_path).stat().st_size > 0
    assert ann.screenshot("two-people-chatting-as-the-owner", tmp_path).stat().st_size > 0

    assert not bob.shown("#delete-chat")  # only the owner may delete
    ann.find("#delete-chat").click()
    WebDriverWait(ann.driver, WAIT).until(expected_conditions.alert_is_present()).accept()
    bob.wait(lambda: bob.find("#notice").text == "This chat was deleted." and not bob.shown("#chat"),
             "bob to learn that the chat was deleted")
    bob.wait(lambda: bob.chat_titles() == [], "the chat to leave bob's list")
    ann.wait(lambda: ann.find("#notice").text == "You deleted the chat.", "ann to see the deletion")
    assert (ann.script_errors(), bob.script_errors()) == ([], [])


def test_history_scrolls_back_page_by_page_and_a_revoked_token_returns_the_page_to_the_login_form(browser, site, tmp_path):
    status, body = call(site, "POST", "/api/auth/register/", {"username": "cat", "password": PASSWORD})
    assert status == 201, body
    status, chat = call(site, "POST", "/api/chats/", {"title": "Archive"}, body["token"])
    assert status == 201, chat
    for seq in range(1, 121):
        status, message = call(site, "POST", f"/api/chats/{chat['id']}/messages/", {"text": f"note {seq}"}, body["token"])
        assert (status, message["seq"]) == (201, seq), message
    expected = [(seq, f"note {seq}") for seq in range(1, 121)]

    cat = browser("cat")
    cat.driver.get(site.url + "/")
    cat.fill("#username", "cat")
    cat.fill("#password", "not the password")
    cat.find("#password").send_keys(Keys.ENTER)
    assert cat.error() == ("invalid_credentials", "Wrong username or password.")
    cat.fill("#password", PASSWORD)
    cat.find("#login").click()
    cat.wait(lambda: cat.find("#whoami").text == "cat", "cat logged in")

    cat.open_chat("Archive")
    cat.wait_messages(expected[70:])  # the latest page, oldest at the top
    cat.wait(lambda: cat.shown("#older"), "the button for older messages")
    cat.find("#older").click()
    cat.wait(lambda: len(cat.messages()) == 100, "the second page")
    cat.find("#older").click()
    cat.wait(lambda: not cat.shown("#older"), "the first message to be reached")
    assert cat.messages() == expected

    status, _ = call(site, "POST", f"/api/chats/{chat['id']}/messages/", {"text": "note 121"}, body["token"])
    assert status == 201
    cat.wait_messages([*expected, (121, "note 121")], timeout=FIRST_EVENT_WAIT)

    status, _ = call(site, "POST", "/api/auth/logout/", token=cat.token())  # as if it logged out elsewhere
    assert status == 204
    cat.wait(lambda: cat.shown("#auth") and not cat.shown("#app"), "the login form after the socket's 4401")
    assert cat.find("#notice").text == "Your session has ended. Please log in again."
    assert cat.token() is None
    assert cat.script_errors() == []


# One unbroken word as long as a title may be: nowhere to wrap it but inside the word.
LONG_TITLE = "Supercalifragilisticexpialidocious" * 7  # 238 characters

LAYOUT = """
const box = (node) => { const r = node.getBoundingClientRect(); return {left: r.left, right: r.right, top: r.top,
                                                                       bottom: r.bottom, width: r.width}; };
const sidebar = document.querySelector('.chats');
return {
  viewport: document.documentElement.clientWidth,
  page: document.documentElement.scrollWidth,
  chat: box(document.getElementById('chat')),
  sidebar: box(sidebar),
  sidebarOverflow: sidebar.scrollWidth - sidebar.clientWidth,
  listTitle: box(document.querySelector('#chat-list .title')),
  head: box(document.querySelector('.chat-head')),
  chatTitle: box(document.getElementById('chat-title')),
};
"""


def inside(inner: dict, outer: dict) -> bool:
    return outer["left"] - 0.5 <= inner["left"] and inner["right"] <= outer["right"] + 0.5


def test_at_400_px_the_chat_takes_the_width_under_the_list_and_a_long_title_stays_in_its_box(browser, site, tmp_path):
    dan = browser("dan")
    dan.driver.set_window_size(400, 800)
    dan.sign_up("dan")
    dan.wait_list_live()
    dan.create_chat(LONG_TITLE)
    dan.wait_chat_live(LONG_TITLE)

    layout = dan.driver.execute_script(LAYOUT)

    assert dan.screenshot("narrow-layout", tmp_path).stat().st_size > 0
    assert layout["viewport"] <= 400, layout
    assert layout["page"] <= layout["viewport"], layout  # nothing scrolls sideways
    assert layout["chat"]["width"] >= 0.9 * layout["viewport"], layout
    assert layout["sidebar"]["bottom"] <= layout["chat"]["top"], layout  # the list above the chat
    assert layout["sidebarOverflow"] <= 0, layout
    assert inside(layout["listTitle"], layout["sidebar"]), layout
    assert inside(layout["chatTitle"], layout["head"]), layout
    assert dan.chat_titles() == [LONG_TITLE]  # shortened on screen only
    assert dan.attribute("#chat-list .title", "title") == LONG_TITLE  # and whole in its tooltip
    assert dan.script_errors() == []


def test_a_private_chat_appears_live_for_a_member_who_is_added_shows_unread_counts_and_closes_when_they_are_removed(
    browser, site, tmp_path
):
    ann, bob = browser("ann"), browser("bob")
    ann.sign_up("ann")
    bob.sign_up("bob")
    ann.wait_list_live()
    bob.wait_list_live()

    ann.create_chat("Secret plans", private=True)
    ann.wait_chat_live("Secret plans")
    assert ann.locked_titles() == ["Secret plans"]
    assert ann.attribute("#chat", "data-visibility") == "private"
    assert ann.attribute("#chat", "data-member") == "owner"
    ann.create_chat("Hallway")
    ann.wait_chat_live("Hallway")
    assert ann.locked_titles() == ["Secret plans"]  # the public one has no lock

    # bob's lobby brings the public chat created after the private one, and never the private one.
    bob.wait(lambda: bob.chat_titles() == ["Hallway"], "the public chat in bob's list", FIRST_EVENT_WAIT)
    bob.driver.refresh()
    bob.wait_list_live()
    assert bob.chat_titles() == ["Hallway"]
    assert bob.locked_titles() == []
    list_reads = bob.requests_to("/api/chats/?limit=100")
    bob.driver.execute_script("window.sameDocument = true")

    ann.open_chat("Secret plans")
    chat_id = ann.chat_id()
    ann.open_members()
    ann.wait(lambda: ann.members() == [("ann", "owner")], "ann alone in the members panel")
    ann.add_member("nobody-here")
    assert ann.error()[0] == "user_not_found"
    ann.add_member("bob")
    ann.wait(lambda: ann.members() == [("ann", "owner"), ("bob", "member")], "bob in the members panel")
    assert ann.find("#member-count").text == "2"

    # Added, the private chat appears in bob's list live: same document, no new read of the list.
    bob.wait(lambda: "Secret plans" in bob.chat_titles(), "the private chat to appear in bob's list, through the lobby")
    assert sorted(bob.chat_titles()) == ["Hallway", "Secret plans"]
    assert bob.locked_titles() == ["Secret plans"]
    assert bob.driver.execute_script("return window.sameDocument") is True
    assert bob.requests_to("/api/chats/?limit=100") == list_reads
    assert bob.badges() == {}  # a member added later starts with nothing unread

    sent = []
    for text in ("first", "second", "third"):
        ann.send(text)
        sent.append((len(sent) + 1, text))
        ann.wait_messages(sent)
    ann.wait(lambda: ann.badges() == {}, "no badge for ann: nothing of her own is unread")

    # The lobby carries no messages: the count comes with the next read of the list (here, a reload).
    bob.driver.refresh()
    bob.wait_list_live()
    bob.wait(lambda: bob.badges() == {"Secret plans": "3"}, "bob's unread badge")
    assert bob.screenshot("private-chat-with-an-unread-badge", tmp_path).stat().st_size > 0

    bob.open_chat("Secret plans")
    bob.wait_messages([(1, "first"), (2, "second"), (3, "third")])
    bob.wait(lambda: bob.badges() == {}, "bob's badge to clear once he has read the chat")
    status, chat = call(site, "GET", f"/api/chats/{chat_id}/", token=bob.token())
    assert (status, chat["membership"]) == (200, {"role": "member", "last_read_seq": 3, "unread": 0}), chat
    bob.driver.get(site.url + "/")  # the list alone, the chat not opened again
    bob.wait_list_live()
    assert sorted(bob.chat_titles()) == ["Hallway", "Secret plans"]
    assert bob.badges() == {}

    # bob's phone: its badge clears live when the laptop reads (chat.read through the lobby).
    status, _ = call(site, "POST", f"/api/chats/{chat_id}/messages/", {"text": "fourth"}, ann.token())
    assert status == 201
    phone = browser("bob-phone")
    phone.log_in("bob")
    phone.wait_list_live()
    phone.wait(lambda: phone.badges() == {"Secret plans": "1"}, "the phone's unread badge")
    phone_reads = phone.requests_to("/api/chats/?limit=100")
    bob.open_chat("Secret plans")
    bob.wait_messages([(1, "first"), (2, "second"), (3, "third"), (4, "fourth")])
    phone.wait(lambda: phone.badges() == {}, "the phone's badge to clear when the laptop reads")
    assert phone.requests_to("/api/chats/?limit=100") == phone_reads

    # Ten messages in a burst: the read position is posted at most about once a second, not once per frame.
    read_posts = bob.requests_to(f"/api/chats/{chat_id}/read/")
    assert read_posts >= 1
    for number in range(5, 15):
        status, _ = call(site, "POST", f"/api/chats/{chat_id}/messages/", {"text": f"burst {number}"}, ann.token())
        assert status == 201
    bob.wait(lambda: len(bob.messages()) == 14, "the burst in bob's chat")
    bob.wait(lambda: call(site, "GET", f"/api/chats/{chat_id}/", token=bob.token())[1]["membership"]["last_read_seq"] == 14,
             "bob's read position to reach the last message")
    burst_posts = bob.requests_to(f"/api/chats/{chat_id}/read/") - read_posts
    assert 1 <= burst_posts <= 4, burst_posts
    # A read answered during the burst left a count behind; the last one clears it, here and on the phone.
    bob.wait(lambda: bob.badges() == {} and phone.badges() == {}, "both of bob's badges to clear after the burst")

    # The owner cannot leave; she removes bob: his open chat closes, and the chat leaves his lists.
    ann.find("#leave-chat").click()
    assert ann.error()[0] == "owner_cannot_leave"
    ann.find("#error-close").click()
    assert ann.screenshot("private-chat-members-panel", tmp_path).stat().st_size > 0
    ann.find("#member-list [data-username='bob'] .remove-member").click()
    ann.wait(lambda: ann.members() == [("ann", "owner")], "bob gone from the members panel")
    bob.wait(lambda: bob.find("#notice").text == "You are no longer a member of this chat." and not bob.shown("#chat"),
             "bob's open chat to close")
    bob.wait(lambda: bob.chat_titles() == ["Hallway"], "the private chat to leave bob's list")
    phone.wait(lambda: phone.chat_titles() == ["Hallway"], "the private chat to leave the phone's list")
    assert bob.screenshot("removed-from-a-private-chat", tmp_path).stat().st_size > 0
    status, body = call(site, "GET", f"/api/chats/{chat_id}/", token=bob.token())
    assert (status, body["error"]["code"]) == (404, "chat_not_found")
    assert (ann.script_errors(), bob.script_errors(), phone.script_errors()) == ([], [], [])


def change_directly(command) -> None:
    """An edit or a deletion through the mediator in this process: the web server may be down meanwhile."""
    mediator.handle_command(command)


def as_participant(username: str):
    return participant_of(get_user_model().objects.get(username=username))


def test_edits_deletions_typing_and_presence_reach_the_other_page_live_and_after_it_was_away(browser, site, tmp_path):
    ann, bob = browser("ann"), browser("bob")
    ann.sign_up("ann")
    bob.sign_up("bob")
    bob.wait_list_live()
    ann.create_chat("Plans")
    ann.wait_chat_live("Plans")
    bob.wait(lambda: bob.chat_titles() == ["Plans"], "the new chat in bob's list, through the lobby", FIRST_EVENT_WAIT)
    bob.open_chat("Plans")
    chat_id = ann.chat_id()

    # Who is online, in both headers.
    ann.wait(lambda: ann.online() == ["ann", "bob"], "bob online in ann's header")
    bob.wait(lambda: bob.online() == ["ann", "bob"], "ann online in bob's header")

    sent = []
    for text in ("meet at 12", "in room 4", "bring the slides"):
        ann.send(text)
        sent.append((len(sent) + 1, text, ""))
        ann.wait(lambda: ann.states() == sent, f"ann's message {len(sent)}")
    # bob joins by posting: his member.joined on the chat's socket adds him to ann's open members panel.
    ann.open_members()
    ann.wait(lambda: ann.members() == [("ann", "owner")], "ann alone in the members panel")
    member_reads = ann.requests_to(f"/api/chats/{chat_id}/members/?limit=200")
    bob.send("ok")
    bob_typed_at = time.monotonic()  # his page sent a typing notice as he typed "ok"
    sent.append((4, "ok", ""))
    for page in (ann, bob):
        page.wait(lambda: page.states() == sent, "the four messages on both pages", FIRST_EVENT_WAIT)
    ann.wait(lambda: ann.members() == [("ann", "owner"), ("bob", "member")], "bob in ann's members panel, live")
    assert ann.find("#member-count").text == "2"
    assert ann.requests_to(f"/api/chats/{chat_id}/members/?limit=200") == member_reads
    assert ann.driver.execute_script(
        "return [...document.querySelectorAll('#member-list .member-item.online .name')].map(n => n.textContent)"
    ) == ["ann", "bob"]
    # The author edits and deletes; the chat's owner deletes anyone's message; others do neither.
    assert [ann.actions(seq) for seq in (1, 4)] == [["edit", "delete"], ["delete"]]
    assert [bob.actions(seq) for seq in (1, 4)] == [[], ["edit", "delete"]]

    # ann edits her first message inline: bob sees the new text, marked "edited", live.
    ann.edit(1, "meet at 12:30")
    bob.wait(lambda: bob.states()[0] == (1, "meet at 12:30", "edited"), "the edit on bob's page")
    ann.wait(lambda: ann.states()[0] == (1, "meet at 12:30", "edited") and not ann.driver.find_elements(
        By.CSS_SELECTOR, ".edit-text"), "the edit on ann's page, the box gone")
    assert ann.requests_to(f"/api/chats/{chat_id}/messages/1/") == 1
    # Escape leaves the message as it was, without a request.
    ann.find("#messages [data-seq='2'] .edit-message").click()
    box = ann.find("#messages [data-seq='2'] .edit-text")
    box.send_keys(" or 5")
    assert ann.screenshot("editing-a-message-inline", tmp_path).stat().st_size > 0
    box.send_keys(Keys.ESCAPE)
    ann.wait(lambda: not ann.driver.find_elements(By.CSS_SELECTOR, ".edit-text"), "the box to close on Escape")
    assert ann.states()[1] == (2, "in room 4", "")
    assert ann.requests_to(f"/api/chats/{chat_id}/messages/2/") == 0

    # ann deletes her third message: a tombstone in its place on both pages.
    ann.delete(3)
    for page in (ann, bob):
        page.wait(lambda: page.states()[2] == (3, "message deleted", "deleted"), "the tombstone of message 3")
    assert ann.actions(3) == []
    assert [seq for seq, _, _ in bob.states()] == [1, 2, 3, 4]

    # Typing: bob's notice reaches ann (never bob himself), and a second typist joins the line.
    status, body = call(site, "POST", "/api/auth/register/", {"username": "cat", "password": PASSWORD})
    assert status == 201, body
    query = urlencode({"token": body["token"]})
    with ws_connect(f"ws://127.0.0.1:{site.port}/ws/chats/{chat_id}/?{query}", proxy=None, open_timeout=WAIT) as cat:
        first = json.loads(cat.recv(timeout=WAIT))
        assert (first["type"], sorted(first["online"])) == ("presence", ["ann", "bob", "cat"]), first
        ann.wait(lambda: ann.online() == ["ann", "bob", "cat"], "cat online in ann's header")
        # One notice per user per 2 s (the page's gate and the server's): bob starts again after a pause, as he
        # would; on a fast machine the steps since "ok" take less than that, and this notice was never sent.
        time.sleep(max(0.0, bob_typed_at + 2.2 - time.monotonic()))
        bob.find("#message-text").send_keys("what ab")
        ann.wait(lambda: ann.typing() == "bob is typing…", "bob typing, on ann's page")
        cat.send(json.dumps({"type": "typing"}))
        ann.wait(lambda: ann.typing() == "bob and cat are typing…", "two typing, on ann's page")
        assert ann.screenshot("typing-and-online", tmp_path).stat().st_size > 0
        assert bob.typing() == "cat is typing…"  # bob's own notice never comes back to him
        ann.wait(lambda: ann.typing() == "", "the typing line to clear a few seconds after the last notice", 10)
    ann.wait(lambda: ann.online() == ["ann", "bob"], "cat to leave ann's header when his socket closes")
    bob.find("#message-text").clear()

    # bob leaves the page for another: ann sees him leave (a page kept in the back/forward cache closes its
    # sockets too). Meanwhile ann edits, deletes (bob's message: she owns the chat) and posts; bob comes back to the
    # same page, which resumes after the last version it applied, and later reloads: the final state, each once.
    bob.driver.execute_script("window.sameDocument = true")
    bob.driver.get("about:blank")
    ann.wait(lambda: ann.online() == ["ann"], "bob to leave ann's header when he leaves the page")
    ann.edit(2, "in room 5")
    ann.delete(4)
    ann.send("room 5 is upstairs")
    final = [(1, "meet at 12:30", "edited"), (2, "in room 5", "edited"), (3, "message deleted", "deleted"),
             (4, "message deleted", "deleted"), (5, "room 5 is upstairs", "")]
    ann.wait(lambda: ann.states() == final, "ann's changes on her page")
    bob.driver.back()
    bob.wait_chat_live("Plans")
    bob.wait(lambda: bob.states() == final, "the final state on bob's page, back from the cache")
    assert bob.driver.execute_script("return window.sameDocument") is True  # resumed, not loaded again
    ann.wait(lambda: ann.online() == ["ann", "bob"], "bob back in ann's header")
    bob.driver.refresh()
    bob.wait_chat_live("Plans")
    bob.wait(lambda: bob.states() == final, "the final state on bob's page, reloaded")
    bob.wait(lambda: bob.online() == ["ann", "bob"], "both online on bob's reloaded page")

    # The web server goes away; what changes meanwhile reaches both pages when they reconnect with after_version:
    # a message created and edited arrives once with its last text, one created and deleted as a tombstone.
    site.web.stop()
    for page in (ann, bob):
        page.wait(lambda: page.attribute("#chat", "data-state") == "reconnecting", "the socket to notice the outage")
    chat = uuid.UUID(chat_id)
    change_directly(EditMessageCommand(chat_id=chat, seq=5, text="room 5 is on the 2nd floor", editor=as_participant("ann")))
    change_directly(DeleteMessageCommand(chat_id=chat, seq=2, requested_by=as_participant("ann")))
    post_directly("ann", chat_id, "coffee first?")
    change_directly(EditMessageCommand(chat_id=chat, seq=6, text="coffee first, at 12:15?", editor=as_participant("ann")))
    post_directly("bob", chat_id, "sorry, wrong chat")
    change_directly(DeleteMessageCommand(chat_id=chat, seq=7, requested_by=as_participant("bob")))
    site.start_web()
    final = [(1, "meet at 12:30", "edited"), (2, "message deleted", "deleted"), (3, "message deleted", "deleted"),
             (4, "message deleted", "deleted"), (5, "room 5 is on the 2nd floor", "edited"),
             (6, "coffee first, at 12:15?", "edited"), (7, "message deleted", "deleted")]
    for page in (ann, bob):
        page.wait_chat_live("Plans")
        page.wait(lambda: page.states() == final, "what changed during the outage", FIRST_EVENT_WAIT)
        page.wait(lambda: page.online() == ["ann", "bob"], "both online again")
    assert bob.screenshot("edited-and-deleted-after-an-outage", tmp_path).stat().st_size > 0

    # And live again after the outage, bob editing his own message this time.
    ann.send("see you")
    final.append((8, "see you", ""))
    bob.wait(lambda: bob.states() == final, "ann's message after the outage", FIRST_EVENT_WAIT)
    bob.send("on my way")
    bob.wait(lambda: len(bob.states()) == 9, "bob's message")
    bob.edit(9, "on my way, 5 min")
    final.append((9, "on my way, 5 min", "edited"))
    for page in (ann, bob):
        page.wait(lambda: page.states() == final, "bob's edit on both pages")
    assert (ann.script_errors(), bob.script_errors()) == ([], [])
