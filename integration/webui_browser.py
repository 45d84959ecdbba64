"""Drives the broker's web UI in headless Chromium (Selenium), for
integration/webui.rs. Arguments: a JSON object with the broker's address,
the ids the pages must show, and where to put screenshots.

Each page must load without a SEVERE entry in the browser console and
without a JavaScript dialog (a hostile name that were not escaped would
open one); the checks print what failed and exit 1.
"""

import json
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, NoSuchElementException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

args = json.loads(sys.argv[1])
base = "http://" + args["broker"]
shots = args.get("screenshots") or ""

options = webdriver.ChromeOptions()
options.binary_location = args["chromium"]
for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,800"]:
    options.add_argument(flag)
options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
driver = webdriver.Chrome(service=Service(args["chromedriver"]), options=options)
driver.set_page_load_timeout(30)
failures = []


def check_page(what):
    """No dialog opened, no console error, and a Weir page with a heading."""
    try:
        alert = driver.switch_to.alert
        failures.append(f"{what}: a JavaScript dialog opened: {alert.text!r}")
        alert.dismiss()
    except NoAlertPresentException:
        pass
    for entry in driver.get_log("browser"):
        if entry.get("level") == "SEVERE":
            failures.append(f"{what}: console error: {entry.get('message')}")
    if not driver.title.startswith("Weir: "):
        failures.append(f"{what}: title is {driver.title!r}")
    if not driver.find_elements(By.TAG_NAME, "h1"):
        failures.append(f"{what}: no heading")


def click_and_wait(element):
    """Click, then wait until the page it leads to has replaced this one
    (a click returns before the navigation ends; a loaded machine shows it)."""
    page = driver.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(driver, 20).until(expected_conditions.staleness_of(page))
    WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")


def visit(path, what, shot=None):
    driver.get(base + path)
    check_page(what)
    if shot and shots:
        driver.save_screenshot(f"{shots}/{shot}.png")


def click_link(text, what):
    try:
        click_and_wait(driver.find_element(By.LINK_TEXT, text))
    except NoSuchElementException:
        failures.append(f"{what}: no link {text!r} on {driver.current_url}")
        return False
    check_page(what)
    return True


def body_text():
    return driver.find_element(By.TAG_NAME, "body").text


try:
    for path, what, shot in [
        ("/ui/", "overview", "overview"),
        ("/ui/agents", "agents", "agents"),
        ("/ui/frameworks", "frameworks", "frameworks"),
        ("/ui/tasks", "tasks", "tasks"),
        ("/ui/reservations", "reservations", None),
        ("/ui/offers", "offers", None),
        ("/ui/policy", "policy", "policy"),
    ]:
        visit(path, what, shot)
    # The share charts are below the fold of the overview.
    visit("/ui/", "overview charts")
    charts = driver.find_elements(By.CSS_SELECTOR, "svg.chart polyline")
    if not charts:
        failures.append("overview: no share history drawn")
    elif shots:
        driver.execute_script("arguments[0].scrollIntoView()", driver.find_element(By.XPATH, "//h2[starts-with(., 'Dominant shares')]"))
        driver.save_screenshot(f"{shots}/overview-shares.png")

    # The running task is listed under its (hostile) name, shown as text.
    visit("/ui/tasks?q=" + args["task"], "task search")
    if args["hostile_name"] not in body_text():
        failures.append("tasks: the hostile name is not shown as text")
    if click_link(args["task"], "task page") and shots:
        driver.save_screenshot(f"{shots}/task.png")
    if click_link("stdout", "task stdout"):
        content = driver.find_element(By.ID, "content").text
        if args["stdout_marker"] not in content:
            failures.append(f"task stdout: {args['stdout_marker']!r} not in {content[:200]!r}")

    # A YARN application links to its containers, and a container to its logs.
    if args.get("app"):
        visit("/ui/frameworks/" + args["shim_framework"], "YARN shim framework")
        if click_link(args["app"], "YARN application"):
            if shots:
                driver.save_screenshot(f"{shots}/yarn-application.png")
            if "RUNNING" not in body_text():
                failures.append("YARN application: not shown RUNNING")
            tracking = [a.get_attribute("href") for a in driver.find_elements(By.LINK_TEXT, "ApplicationMaster")]
            if not any("/proxy/" + args["app"] in (h or "") for h in tracking):
                failures.append(f"YARN application: no tracking link through the shim's proxy: {tracking}")
            containers = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "a[href^='/ui/tasks/']") if a.text.startswith("container_")]
            if not containers:
                failures.append("YARN application: no container listed")
            elif click_link(sorted(containers)[0], "AM container") and click_link("stderr", "AM container stderr"):
                content = driver.find_element(By.ID, "content").text
                if "ApplicationMaster" not in content:
                    failures.append(f"AM container stderr: no ApplicationMaster log line in {content[:300]!r}")

    # Kill: the form posts, the page comes back, the task ends KILLED.
    visit("/ui/tasks/" + args["framework"] + "/" + args["task"], "task page before kill")
    click_and_wait(driver.find_element(By.ID, "kill"))
    check_page("after kill")
    deadline = time.time() + 30
    while "TASK_KILLED" not in body_text() and time.time() < deadline:
        time.sleep(0.5)
        driver.refresh()
    check_page("killed task")
    if "TASK_KILLED" not in body_text():
        failures.append("kill: the task page never showed TASK_KILLED")
finally:
    driver.quit()

if failures:
    print("\n".join(failures))
    sys.exit(1)
print("browser checks passed")
