"""The web dashboard in a real browser (Debian's headless Chromium, driven by Playwright)
against a real service (uvicorn in its own process) holding jobs and a sweep that really
trained: recu_core's training through the worker's own per-rank function
(``workers.train_loop.run_training``, here without Ray around it) wrote their metrics,
telemetry, logs and checkpoints.

Every page is visited signed in with a real token and must log no console error and no
uncaught exception; screenshots go to build/screenshots/ (not committed).
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import httpx
import pytest

from recu_cli.local_service import local_service
from recu_db import cluster, queue, trials
from recu_db.engine import make_engine, make_sessionmaker
from recu_db.migrate import upgrade
from recu_db.states import JobState

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's package
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
EPOCHS = 4
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
# Chromium as root in a container, with no network beyond loopback (see docs/dashboard.md)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is a dev dependency (`make install`)"
)
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"no Chromium at {CHROMIUM}: `apt-get install chromium` (.ci/run installs it)",
)

SPEC = {
    "model": "resnet20",
    "dataset": {"name": "digits", "num_train": 256, "num_test": 128},
    "epochs": EPOCHS,
    "batch_size": 64,
    "kernels": "eager",
    "checkpoint": {"every_epochs": 2, "keep": 5},
}


def _train(db, lease, url: str) -> None:
    """What a worker does with a 1-worker lease: train it through the per-rank function
    (results written to the database under the lease), then record its end."""
    from workers.train_loop import run_training

    run_training(lease, database_url=url, lease_s=120, rank=0, report=lambda _: None)
    queue.finish(db, lease, JobState.SUCCEEDED)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """A running API with: a finished job, a finished 2x2 tau sweep, a queued job and a
    running job (claimed, its lease held by this fixture)."""
    workdir = tmp_path_factory.mktemp("dashboard")
    url = f"sqlite:///{workdir / 'recu.db'}"
    engine = make_engine(url)
    upgrade(engine)
    db = make_sessionmaker(engine)
    with local_service(workdir, database_url=url, workers=0) as running, running.client() as http:
        done = http.post("/jobs", json=SPEC).json()
        _train(db, queue.claim(db, "test", lease_s=120), url)

        sweep = http.post(
            "/sweeps",
            json={
                "base": {**SPEC, "epochs": 2},
                "space": {
                    "tau.tau_s": {"kind": "grid", "values": [0.85, 0.9]},
                    "tau.tau_e": {"kind": "grid", "values": [0.97, 0.99]},
                },
                "search": "grid",
                "scheduler": {"kind": "none"},
            },
        )
        assert sweep.status_code == 201, sweep.text
        sweep = sweep.json()
        sweep_lease = queue.claim(db, "test", lease_s=120)
        assert sweep_lease.job_id == sweep["id"]
        for trial in sweep["trials"]:
            _train(db, trials.start_trial(db, sweep_lease, str(trial["index"])), url)
        queue.finish(db, sweep_lease, JobState.SUCCEEDED)

        queued = http.post("/jobs", json=SPEC).json()
        running_job = http.post("/jobs", json={**SPEC, "priority": 5}).json()
        held = queue.claim(db, "test", lease_s=600)
        assert held.job_id == running_job["id"]
        yield {
            "service": running,
            "http": http,
            "done": done["id"],
            "sweep": sweep["id"],
            "queued": queued["id"],
            "running": running_job["id"],
            "db": db,
        }
    engine.dispose()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, service):
    """A signed-in page; the test fails on any console error or uncaught exception."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(f"{service['service'].api}/ui/jobs")
    page.wait_for_url(re.compile(r"/ui/login\?next="))
    page.fill("#token", service["service"].token)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/ui/jobs$"))
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda err: problems.append(str(err)))
    yield page
    assert problems == []
    context.close()


def _shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _attributes(page, selector: str, name: str) -> list[str]:
    return [
        page.locator(selector).nth(i).get_attribute(name) or ""
        for i in range(page.locator(selector).count())
    ]


def _points(page, series: str) -> int:
    coords = page.get_attribute(f"polyline[data-series='{series}']", "points") or ""
    return len(coords.split())


def test_a_wrong_token_is_refused_and_no_page_shows_data_without_signing_in(browser, service):
    context = browser.new_context()
    page = context.new_page()
    api = service["service"].api
    page.goto(f"{api}/ui/jobs/{service['done']}")
    page.wait_for_url(re.compile(r"/ui/login\?next=%2Fui%2Fjobs%2F"))
    page.fill("#token", "recu_nope_nope")
    page.click("button[type=submit]")
    page.wait_for_selector("#error:not([hidden])")
    assert "invalid or revoked token" in page.inner_text("#error")
    assert "/ui/login" in page.url
    assert context.request.get(f"{api}/jobs").status == 401
    context.close()


def test_jobs_list_filters_and_updates_live(page, service):
    page.wait_for_selector(f"tr[data-job='{service['done']}']")
    listed = service["http"].get("/jobs").json()
    assert page.locator("#jobs tbody tr").count() == listed["total"] == 3
    page.select_option("#state", "succeeded")
    sync_api.expect(page.locator("#jobs tbody tr")).to_have_count(1)
    assert page.get_attribute("#jobs tbody tr", "data-job") == str(service["done"])
    assert "state=succeeded" in page.url
    page.select_option("#kind", "trial")
    sync_api.expect(page.locator("#jobs tbody tr")).to_have_count(4)
    page.select_option("#kind", "train")
    page.select_option("#state", "")
    _shot(page, "jobs")
    # a job submitted elsewhere shows up without a reload
    new = service["http"].post("/jobs", json={**SPEC, "epochs": 1}).json()
    page.wait_for_selector(f"tr[data-job='{new['id']}'][data-state='queued']")
    service["http"].post(f"/jobs/{new['id']}/cancel")
    page.wait_for_selector(f"tr[data-job='{new['id']}'][data-state='cancelled']")


def test_job_page_draws_every_curve_point_telemetry_and_histogram(page, service):
    job_id, http = service["done"], service["http"]
    page.goto(f"{service['service'].api}/ui/jobs/{job_id}")
    page.wait_for_selector("body[data-loaded='succeeded']")
    for series in ("train_loss", "test_loss", "train_acc", "test_acc", "tau", "lr"):
        assert _points(page, series) == EPOCHS, series
        assert page.get_attribute(f"polyline[data-series='{series}']", "data-count") == str(EPOCHS)
    # per-layer telemetry: one line per binary layer, a point per epoch
    telemetry = http.get(f"/jobs/{job_id}/telemetry").json()
    layers = list(telemetry[-1]["telemetry"]["layers"])
    lines = page.locator("#chart-telemetry polyline")
    assert lines.count() == len(layers) > 10
    assert _points(page, layers[0]) == EPOCHS
    page.select_option("#telemetry-field", "flip_rate")
    assert page.locator("#chart-telemetry polyline").count() == len(layers)
    # the latent-weight histogram: every bin, the last epoch first, then the first by the slider
    bins = telemetry[-1]["telemetry"]["hist_bins"]
    assert page.locator("#chart-hist rect.bar").count() == bins
    assert page.inner_text("#hist-epoch") == str(EPOCHS)
    assert page.locator("#chart-hist line.marker").count() == 2  # +-Q/b of the clamp
    last_heights = _attributes(page, "#chart-hist rect.bar", "height")
    page.fill("#hist-slider", "0")
    assert page.inner_text("#hist-epoch") == "1"
    assert _attributes(page, "#chart-hist rect.bar", "height") != last_heights
    # events, logs and checkpoints as the API has them
    events = http.get(f"/jobs/{job_id}/events").json()
    assert page.locator("#events tbody tr").count() == len(events)
    assert "epoch 1/4" in page.inner_text("#logs")
    stored = http.get(f"/jobs/{job_id}/checkpoints").json()
    shown = _attributes(page, "#checkpoints tbody tr", "data-checkpoint")
    assert [int(c) for c in shown] == [c["id"] for c in stored]
    # best and last test accuracy, as the API reports them; the best epoch's checkpoint marked
    job = http.get(f"/jobs/{job_id}").json()
    summary = page.inner_text("#summary")
    shown_acc = lambda v: str(int(v)) if float(v).is_integer() else f"{v:.4f}"  # api.js fmt  # noqa: E731
    assert f"{shown_acc(job['best_test_acc'])} (epoch {job['best_epoch']})" in summary
    assert shown_acc(job["last_test_acc"]) in summary
    best_rows = _attributes(page, "#checkpoints tbody tr[data-best='true']", "data-checkpoint")
    assert best_rows == [str(c["id"]) for c in stored if c["epoch"] == job["best_epoch"]]
    _shot(page, "job")
    with page.expect_download() as download:
        page.click(f"tr[data-checkpoint='{stored[-1]['id']}'] a.download")
    data = Path(download.value.path()).read_bytes()
    assert hashlib.sha256(data).hexdigest() == stored[-1]["sha256"]
    assert page.locator("#cancel").is_hidden()


def test_curves_are_downsampled_by_the_server(page, service):
    page.goto(f"{service['service'].api}/ui/jobs/{service['done']}?points=3")
    page.wait_for_selector("body[data-loaded='succeeded']")
    assert _points(page, "test_acc") == 3
    assert _points(page, "tau") == 3


def test_cancel_from_the_job_page(page, service):
    http, api = service["http"], service["service"].api
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{api}/ui/jobs/{service['queued']}")
    page.wait_for_selector("body[data-loaded='queued']")
    page.click("#cancel")
    page.wait_for_selector("body[data-loaded='cancelled']")
    assert http.get(f"/jobs/{service['queued']}").json()["state"] == "cancelled"
    page.goto(f"{api}/ui/jobs/{service['running']}")
    page.wait_for_selector("body[data-loaded='running']")
    page.click("#cancel")
    page.wait_for_selector("body[data-loaded='cancelling']")  # its worker ends it
    assert http.get(f"/jobs/{service['running']}").json()["state"] == "cancelling"
    _shot(page, "job-cancelling")
    # the session cookie alone (no dashboard header) changes nothing: CSRF guard
    refused = page.context.request.post(f"{api}/jobs/{service['done']}/cancel")
    assert refused.status == 403
    assert http.get(f"/jobs/{service['done']}").json()["state"] == "succeeded"


def test_sweep_pages_plot_every_trial_and_mark_the_best(page, service):
    http, api = service["http"], service["service"].api
    page.goto(f"{api}/ui/sweeps")
    page.wait_for_selector(f"tr[data-sweep='{service['sweep']}'][data-state='succeeded']")
    _shot(page, "sweeps")
    page.click(f"tr[data-sweep='{service['sweep']}'] a")
    page.wait_for_selector("body[data-loaded='succeeded']")
    sweep = http.get(f"/sweeps/{service['sweep']}").json()
    assert page.locator("#chart-scatter circle.point").count() == len(sweep["trials"]) == 4
    best = page.locator("#chart-scatter circle.point.best")
    assert best.count() == 1
    assert float(best.get_attribute("data-value")) == pytest.approx(sweep["best"]["value"])
    assert page.locator("#chart-trials polyline").count() == 4
    assert page.locator("#trials tbody tr").count() == 4
    best_row = page.get_attribute("#trials tbody tr.best", "data-trial")
    assert best_row == str(sweep["best"]["trial_id"])
    _shot(page, "sweep")
    with page.expect_download() as download:
        page.click("#summary a.download")
    data = Path(download.value.path()).read_bytes()
    assert hashlib.sha256(data).hexdigest() == sweep["best"]["checkpoint"]["sha256"]


def test_pages_send_a_content_security_policy(service):
    page = httpx.get(f"{service['service'].api}/ui/jobs")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"


def test_a_stopped_trial_page_stops_polling_and_a_queued_job_says_why(page, service):
    """The pages decide by the API's ``terminal``: an ASHA-stopped trial's page is drawn
    and then polls no more (a copied list of terminal states without ``stopped`` polled it
    forever). A queued job shows why it has not started, in the list and on its page."""
    http, api, db = service["http"], service["service"].api, service["db"]
    one = {"tau.tau_s": {"kind": "grid", "values": [0.9]}}
    body = {"base": SPEC, "space": one, "search": "grid", "priority": 10}
    sweep = http.post("/sweeps", json=body).json()
    lease = queue.claim(db, "test", lease_s=120)
    assert lease.job_id == sweep["id"]
    trial = trials.start_trial(db, lease, "0")
    figures = {"train_loss": 1.0, "test_loss": 1.1, "train_acc": 0.5, "test_acc": 0.4}
    queue.record_epoch(db, trial, 1, {**figures, "tau": 0.9, "lr": 0.1, "best_test_acc": 0.4})
    assert trials.end_trial(db, lease, "0", JobState.STOPPED, "stopped early by ASHA")
    queue.finish(db, lease, JobState.SUCCEEDED)
    page.goto(f"{api}/ui/jobs/{trial.job_id}")
    page.wait_for_selector("body[data-loaded='stopped']")
    polls: list[str] = []
    page.on(
        "request",
        lambda r: polls.append(r.url) if r.url.endswith(f"/jobs/{trial.job_id}") else None,
    )
    page.wait_for_timeout(4500)  # more than two polling periods (2 s)
    assert polls == []

    cluster.publish(db, "dashboard-test", [{"CPU": 2.0, "GPU": 0.0}], {"CPU": 2.0, "GPU": 0.0})
    try:
        gpu = http.post("/jobs", json={**SPEC, "resources": {"use_gpu": True}}).json()["id"]
        reason = http.get(f"/jobs/{gpu}").json()["pending_reason"]
        assert reason.startswith("unschedulable: needs 1 worker x {CPU: 1, GPU: 1}")
        page.goto(f"{api}/ui/jobs")
        note = page.locator(f"tr[data-job='{gpu}'] .pending.unschedulable")
        sync_api.expect(note).to_have_text(reason)
        page.goto(f"{api}/ui/jobs/{gpu}")
        page.wait_for_selector("body[data-loaded='queued']")
        assert page.inner_text(f"#summary [data-pending='{gpu}']") == reason
        _shot(page, "job-unschedulable")
        http.post(f"/jobs/{gpu}/cancel")
    finally:
        cluster.withdraw(db, "dashboard-test")


@pytest.mark.parametrize(
    ("path", "rendered"),
    [
        ("/docs", ".opblock-summary-path[data-path='/jobs/{job_id}']"),  # Swagger UI's operations
        ("/redoc", "[data-section-id^='tag/jobs']"),  # ReDoc's sections
    ],
)
def test_api_docs_render_with_the_network_closed(browser, service, path, rendered):
    """Swagger UI and ReDoc load their assets from the service itself: every request that
    leaves the service's origin is aborted, and the pages still render the API. (ReDoc's
    bundle asks its CDN for its own "powered by" logo, an image it hides when that fails;
    nothing the page needs comes from outside.)"""
    api = service["service"].api
    context = browser.new_context()
    outside: list[str] = []

    def only_the_service(route) -> None:
        if route.request.url.startswith(api):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", only_the_service)
    page = context.new_page()
    page.goto(f"{api}{path}")
    page.wait_for_selector(rendered, timeout=60_000)
    assert set(outside) <= {REDOC_LOGO}, outside
    _shot(page, f"api{path.replace('/', '-')}")
    context.close()
