"""People in real Chromium: sign in with a key, see LSCOR's versions and aliases in the
MLflow UI at the tracking URI, follow the "View run" link the stock MLflow client
prints, sign out; a revoked key's session is refused on the next click; an admin creates
a key and a webhook endpoint in the console and sees a test delivery's attempt.

With ``UPDATE_SCREENSHOTS=1`` the pages are also saved under docs/screenshots/
(the README shows them).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from hokusai.keys.scopes import Scope
from hokusai.server.mlflow_process import MlflowProcess
from tests.chromium import save_screenshot
from tests.helpers import RunningGateway, sqlite_gateway
from tests.webhooks.receiver import Receiver, running_receiver

pytestmark = pytest.mark.integration

V2 = "/api/mlflow/api/2.0/mlflow"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def screenshot(page: Page, name: str, tmp_path: Path) -> None:
    where = SCREENSHOTS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path
    shot = save_screenshot(page, where / f"{name}.png")
    assert shot.read_bytes().startswith(b"\x89PNG")


@pytest.fixture(scope="module")
def site(
    mlflow_server: MlflowProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    home = tmp_path_factory.mktemp("people")
    with sqlite_gateway(home, mlflow_server.url, webhook_allow_private=True) as running:
        yield running


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


def sign_in(page: Page, site: RunningGateway, key: str, start: str = "/api/mlflow/") -> None:
    page.goto(site.url + start)
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()


def registered_lscor(site: RunningGateway) -> tuple[str, str]:
    """LSCOR with two versions and a champion, made by the stock client like a team's
    training job; the model's name and the "View run" link the client printed."""
    name = f"LSCOR-{uuid.uuid4().hex[:6]}"
    script = f"""
import mlflow
from mlflow import MlflowClient
client = MlflowClient()
experiment = mlflow.set_experiment("lead scoring {name}")
with mlflow.start_run(run_name="lscor-baseline") as run:
    mlflow.log_metric("auroc", 0.91)
client.create_registered_model("{name}")
for _ in range(2):
    client.create_model_version("{name}", f"runs:/{{run.info.run_id}}/model", run.info.run_id)
client.set_registered_model_alias("{name}", "champion", "2")
"""
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": site.tracking_uri,
        "MLFLOW_TRACKING_TOKEN": site.create_key(Scope.PROMOTE),
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    printed = done.stdout + done.stderr
    link = re.search(r"View run lscor-baseline at: (\S+)", printed)
    assert link, printed
    return name, link.group(1)


def test_a_person_uses_the_mlflow_ui_behind_a_key(
    site: RunningGateway, page: Page, tmp_path: Path
) -> None:
    name, run_link = registered_lscor(site)
    assert run_link.startswith(site.url + "/api/mlflow/#/experiments/")
    reader = site.create_key(Scope.READ)

    sign_in(page, site, reader)
    # Signed in, in the MLflow UI, in the key's workspace (which the UI keeps from now on).
    expect(page).to_have_url(
        re.compile(re.escape(site.url + "/api/mlflow/#/") + r".*workspace=default")
    )
    page.wait_for_function(
        "() => window.localStorage.getItem('mlflow.activeWorkspace') === 'default'"
    )

    # The registered model, its versions and its alias, as MLflow's own UI shows them.
    page.goto(f"{site.url}/api/mlflow/#/models/{name}")
    expect(page.get_by_text("Version 2").first).to_be_visible()
    expect(page.get_by_text("Version 1").first).to_be_visible()
    expect(page.get_by_text("champion").first).to_be_visible()
    screenshot(page, "mlflow-ui-model", tmp_path)

    # The link MLflow printed after the run opens that run.
    page.goto(run_link)
    expect(page.get_by_text("lscor-baseline").first).to_be_visible()
    expect(page.get_by_text("auroc").first).to_be_visible()

    # Signing out ends the session: the UI asks to sign in again.
    page.goto(site.url + "/logout")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto(site.url + "/api/mlflow/")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    screenshot(page, "sign-in", tmp_path)


def test_a_revoked_keys_session_is_refused_on_the_next_click(
    site: RunningGateway, page: Page
) -> None:
    key = site.create_key(Scope.READ)
    sign_in(page, site, key)
    expect(page).to_have_url(re.compile(re.escape(site.url + "/api/mlflow/")))
    site.revoke_key(key)
    page.reload()
    expect(page).to_have_url(re.compile(r"/login\?next="))


def test_an_admin_manages_keys_and_webhooks_in_the_console(
    site: RunningGateway, page: Page, receiver: Receiver, tmp_path: Path
) -> None:
    sign_in(page, site, site.create_key(Scope.ADMIN), start="/admin/")
    expect(page).to_have_url(site.url + "/admin/")
    screenshot(page, "console", tmp_path)

    # A key, shown once.
    page.goto(site.url + "/admin/keys")
    page.locator("#key-name").fill("deploy pipeline")
    page.locator("#key-role").select_option("write")
    page.locator("#create-key-submit").click()
    new_key = page.locator("[data-new-key]")
    expect(new_key).to_be_visible()
    shown = new_key.get_attribute("data-new-key") or new_key.inner_text()
    assert shown.strip().startswith("hk_live_")
    # (No screenshot of this page: it holds a key.)
    page.goto(site.url + "/admin/keys")
    assert shown.strip() not in page.content()  # never again

    # A webhook endpoint, a test delivery and its attempt.
    page.goto(site.url + "/admin/webhooks")
    page.locator("#endpoint-url").fill(receiver.url("/hooks"))
    page.locator("#endpoint-description").fill("deploys")
    page.locator("#add-endpoint").get_by_role("button").click()
    expect(page.locator("[data-signing-secret]")).to_be_visible()
    page.goto(site.url + "/admin/webhooks")
    row = page.locator("#endpoints tr[data-endpoint-id]").last
    endpoint_id = row.get_attribute("data-endpoint-id")
    page.locator(f"#test-{endpoint_id}").click()
    expect(page.locator("tr.attempt[data-status-code='200']").first).to_be_visible()
    screenshot(page, "console-deliveries", tmp_path)
    assert receiver.wait_for("/hooks", 1)


def test_sign_in_and_the_console_work_by_keyboard(site: RunningGateway, page: Page) -> None:
    """No mouse: the key field has the focus, Enter signs in; the console's forms are
    reached with Tab and sent with Enter."""
    page.goto(site.url + "/login?next=/admin/keys")
    # The field takes the focus when the page has loaded; typing before that would lose
    # the key's first characters, so wait for the focus the test is about.
    expect(page.get_by_label("API key")).to_be_focused()
    page.keyboard.type(site.create_key(Scope.ADMIN))
    page.keyboard.press("Enter")
    expect(page).to_have_url(site.url + "/admin/keys")
    page.locator("#key-name").focus()
    page.keyboard.type("keyboard made")
    page.keyboard.press("Tab")  # to the owner field
    expect(page.locator("#key-owner")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("[data-new-key]")).to_be_visible()
    expect(page.get_by_text("keyboard made").first).to_be_visible()
