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
import itertools
import re
import shutil
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from recu_cli.local_service import local_service
from recu_db import cluster, queue, results, trials
from recu_db.engine import make_engine, make_sessionmaker
from recu_db.migrate import upgrade
from recu_db.states import JobState
from recu_db.tokens import create_token

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's package
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
EPOCHS = 4
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
# The browser's zone in every test: dates must name it (UTC+01:00 in December)
ZONE = "Europe/Paris"
# What a live page may wait for: an epoch written to the database reaches the browser
# through one stream read (RECU_API_STREAM_POLL_S, 0.5 s) or one poll (2 s); a minute
# leaves room for a loaded machine.
LIVE_MS = 60_000
# The one console error a page may log: a job's manifest is a 409 until its worker records
# it (the page shows that as "not recorded yet"), and Chromium logs every failed fetch.
MANIFEST_MISSING = re.compile(r"/jobs/\d+/manifest$")
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
        telemetry = http.get(f"/jobs/{done['id']}/telemetry").json()[-1]["telemetry"]
        yield {
            "service": running,
            "http": http,
            "telemetry": telemetry,
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
    context, page = _signed_in(browser, service["service"].api, service["service"].token)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if _error(m) else None)
    page.on("pageerror", lambda err: problems.append(str(err)))
    yield page
    assert problems == []
    context.close()


def _signed_in(browser, api: str, token: str, **options):
    """A new browser context (in ZONE) and its page, signed in with ``token``."""
    context = browser.new_context(
        viewport={"width": 1400, "height": 1000}, timezone_id=ZONE, **options
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(f"{api}/ui/jobs")
    page.wait_for_url(re.compile(r"/ui/login\?next="))
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/ui/jobs$"))
    return context, page


def _error(message) -> bool:
    """A console error, except a not-yet-recorded manifest's 409 (see MANIFEST_MISSING)."""
    if message.type != "error":
        return False
    return not MANIFEST_MISSING.search(message.location.get("url", ""))


def _shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _attributes(page, selector: str, name: str) -> list[str]:
    return [
        page.locator(selector).nth(i).get_attribute(name) or ""
        for i in range(page.locator(selector).count())
    ]


def _texts(page, selector: str) -> list[str]:
    return page.locator(selector).all_text_contents()


def _pct(fraction: float) -> str:
    """The dashboard's one accuracy format (api.js pct)."""
    return f"{100 * fraction:.1f}%"


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
    # per-layer telemetry: a heat map cell per layer and epoch; lines for 3 chosen layers
    telemetry = http.get(f"/jobs/{job_id}/telemetry").json()
    layers = list(telemetry[-1]["telemetry"]["layers"])
    assert len(layers) > 10
    assert page.locator("#chart-heatmap rect.cell").count() == len(layers) * EPOCHS
    assert _texts(page, "#chart-heatmap text.row-label") == layers
    lines = page.locator("#chart-telemetry polyline")
    assert lines.count() == 3
    assert _points(page, layers[0]) == EPOCHS
    page.select_option("#telemetry-field", "flip_rate")
    assert page.locator("#chart-heatmap rect.cell").count() == len(layers) * EPOCHS
    assert "sign flips (%)" in _texts(page, "#chart-telemetry .axis-label")
    assert "sign flips (%):" in page.inner_text("#chart-heatmap .colourbar")
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
    assert f"{_pct(job['best_test_acc'])} (epoch {job['best_epoch']})" in summary
    assert _pct(job["last_test_acc"]) in summary
    # dates in the browser's zone, named
    created = datetime.fromisoformat(job["created_at"]).astimezone(ZoneInfo(ZONE))
    assert f"{created:%Y-%m-%d %H:%M:%S} UTC+01:00" in summary
    best_rows = _attributes(page, "#checkpoints tbody tr[data-best='true']", "data-checkpoint")
    assert best_rows == [str(c["id"]) for c in stored if c["epoch"] == job["best_epoch"]]
    _shot(page, "job")
    with page.expect_download() as download:
        page.click(f"tr[data-checkpoint='{stored[-1]['id']}'] a.download")
    data = Path(download.value.path()).read_bytes()
    assert hashlib.sha256(data).hexdigest() == stored[-1]["sha256"]
    assert page.locator("#cancel").is_hidden()


def test_job_page_heat_map_lines_axes_configuration_and_manifest(page, service):
    """The per-layer telemetry as a heat map (a cell per layer and epoch, a read-out of one
    cell), lines for a few chosen layers in distinct colours, axis labels with units, and
    the configuration and reproducibility panels."""
    job_id, http = service["done"], service["http"]
    page.goto(f"{service['service'].api}/ui/jobs/{job_id}")
    page.wait_for_selector("body[data-loaded='succeeded']")
    layers = list(service["telemetry"]["layers"])
    # hovering one cell reads that cell, in the field's unit
    cell = f"#chart-heatmap rect.cell[data-layer='{layers[1]}'][data-epoch='2']"
    page.hover(cell)
    readout = page.inner_text("#chart-heatmap .readout")
    assert re.fullmatch(rf"{re.escape(layers[1])}, epoch 2: [-\d.e]+ % of weights", readout)
    # three default lines, each its own colour; a click on a layer's name adds one
    colours = _attributes(page, "#chart-telemetry polyline", "stroke")
    assert len(colours) == len(set(colours)) == 3
    page.click(f"#chart-heatmap text.row-label[data-layer='{layers[4]}']")
    colours = _attributes(page, "#chart-telemetry polyline", "stroke")
    assert len(colours) == len(set(colours)) == 4
    assert page.locator(f"#chart-heatmap rect.swatch[data-layer='{layers[4]}']").count() == 1
    page.click(f"#chart-heatmap text.row-label[data-layer='{layers[4]}']")
    assert page.locator("#chart-telemetry polyline").count() == 3
    # every chart names its axes with their units
    axes = _texts(page, ".axis-label")
    for label in (
        "cross-entropy loss (nats)",
        "accuracy (%)",
        "τ (ReCU clamp quantile, no unit)",
        "learning rate (per step)",
        "beyond the clamp (%)",
        "fraction of weights",
    ):
        assert label in axes, label
    assert axes.count("epoch") == 6  # 4 curves, the heat map, the chosen lines
    page.hover("#chart-acc svg")  # the read-out: accuracies in the one format, 17.2%
    assert re.search(r"test_acc \d+\.\d%", page.inner_text("#chart-acc .readout"))
    acc = page.get_attribute("polyline[data-series='test_acc']", "points") or ""
    assert max(float(p.split(",")[1]) for p in acc.split()) > 0  # drawn on the % scale
    # the configuration: the spec's fields, grouped and readable
    spec = http.get(f"/jobs/{job_id}").json()["spec"]
    field = lambda path: page.inner_text(f"#config dd[data-field='{path}']")  # noqa: E731
    assert field("optimizer.weight_decay") == str(spec["optimizer"]["weight_decay"])
    assert field("binary_options.clamp") == "on"
    assert field("binary_options.standardize") == "on"
    assert field("binary_options.activation_ste") == spec["binary_options"]["activation_ste"]
    assert field("binary_options.alpha") == "learned"
    assert field("seed") == "0"
    assert field("batch_size") == "64"
    assert field("tau.tau_s") == str(spec["tau"]["tau_s"])
    assert field("resources.num_workers") == "1"
    assert _texts(page, "#config h3")[:4] == ["Run", "ReCU", "Optimiser", "Data"]
    # reproducibility: the manifest as the API has it, or why there is none
    manifest = http.get(f"/jobs/{job_id}/manifest")
    if manifest.status_code == 200:
        shown = page.inner_text("#manifest")
        assert manifest.json()["recu_version"] in shown
        assert manifest.json()["hostname"] in shown
    else:
        assert manifest.status_code == 409
        assert "No manifest was recorded" in page.inner_text("#manifest-empty")
    _shot(page, "job-telemetry")


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
    shown = float(best.get_attribute("data-value"))
    percent = 100 if sweep["spec"]["metric"].endswith("_acc") else 1  # accuracies as %
    assert shown == pytest.approx(percent * sweep["best"]["value"])
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


def _claimed(service, **fields) -> tuple[int, queue.Lease]:
    """A new job, claimed here as a worker would (its lease held by the test)."""
    job = service["http"].post("/jobs", json={**SPEC, "priority": 50, **fields}).json()
    lease = queue.claim(service["db"], "test", lease_s=600)
    assert lease.job_id == job["id"]
    return job["id"], lease


def _epoch(service, lease, epoch: int, seconds: float) -> None:
    """Write one epoch as a worker's recorder does: its metrics, its telemetry, a log line."""
    db, acc = service["db"], 0.3 + 0.1 * epoch
    figures = {"train_loss": 2.0 / epoch, "test_loss": 2.1 / epoch, "train_acc": acc}
    figures |= {"test_acc": acc - 0.05, "tau": 0.85 + 0.03 * epoch, "lr": 0.1}
    figures |= {"best_test_acc": acc - 0.05, "best_epoch": epoch, "epoch_time_s": seconds}
    assert queue.record_epoch(db, lease, epoch, figures)
    assert results.record_telemetry(db, lease, epoch, service["telemetry"])
    assert results.append_logs(db, lease, [f"epoch {epoch}/{EPOCHS} written by the test"])


def _acc_points(page):
    return page.locator("polyline[data-series='test_acc']")


def test_job_page_follows_the_stream_and_shows_an_eta(page, service):
    """A running job's page gets its epochs, telemetry and logs through GET /jobs/{id}/stream:
    a row written to the database appears without the page asking for the metrics again;
    its ETA is "estimating" before the first epoch, then epochs left x the mean epoch time."""
    api = service["service"].api
    job_id, lease = _claimed(service)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{api}/ui/jobs/{job_id}")
    page.wait_for_selector("body[data-live='stream']", timeout=LIVE_MS)
    assert page.inner_text("#eta") == "estimating (after the first epoch)"
    assert (
        page.inner_text("#curves-empty") == "No epochs yet: attempt 1 is running its first epoch."
    )
    assert page.is_visible("#live")
    _epoch(service, lease, 1, seconds=12.0)
    sync_api.expect(_acc_points(page)).to_have_attribute("data-count", "1", timeout=LIVE_MS)
    sync_api.expect(page.locator("#eta")).to_contain_text("36s left", timeout=LIVE_MS)
    _epoch(service, lease, 2, seconds=14.0)
    sync_api.expect(_acc_points(page)).to_have_attribute("data-count", "2", timeout=LIVE_MS)
    sync_api.expect(page.locator("#eta")).to_contain_text("26s left", timeout=LIVE_MS)  # 2 x 13 s
    assert re.search(
        r"UTC\+01:00 \(2 epochs × 13\.0 s, the mean of the last 2\)", page.inner_text("#eta")
    )
    cells = page.locator("#chart-heatmap rect.cell")
    sync_api.expect(cells).to_have_count(2 * len(service["telemetry"]["layers"]), timeout=LIVE_MS)
    sync_api.expect(page.locator("#logs")).to_contain_text("epoch 2/4 written by the test")
    _shot(page, "job-live")
    assert [u for u in requests if u.endswith(f"/jobs/{job_id}/stream")]
    asked = [u for u in requests if f"/jobs/{job_id}/metrics" in u]
    assert len(asked) == 1  # the first drawing: the epochs came by the stream
    polled = [u for u in requests if u.endswith(f"/jobs/{job_id}") and "/ui/" not in u]
    assert len(polled) == 1  # no polling
    assert queue.finish(service["db"], lease, JobState.SUCCEEDED)
    page.wait_for_selector("body[data-loaded='succeeded']", timeout=LIVE_MS)
    assert page.is_hidden("#live")
    assert page.locator("#summary #eta").count() == 0


@pytest.mark.parametrize("without", ["blocked", "absent"])
def test_job_page_falls_back_to_polling_without_the_stream(page, service, without):
    """With the stream cut at once each time (as a proxy that closes it would), or no
    EventSource in the browser, the page polls instead and still shows new epochs."""
    api = service["service"].api
    if without == "blocked":
        page.route(
            "**/jobs/*/stream",
            lambda route: route.fulfill(
                status=200, headers={"Content-Type": "text/event-stream"}, body="retry: 100\n\n"
            ),
        )
    else:
        page.add_init_script("delete window.EventSource")
    job_id, lease = _claimed(service)
    page.goto(f"{api}/ui/jobs/{job_id}")
    page.wait_for_selector("body[data-live='poll']", timeout=LIVE_MS)
    _epoch(service, lease, 1, seconds=5.0)
    sync_api.expect(_acc_points(page)).to_have_attribute("data-count", "1", timeout=LIVE_MS)
    assert page.inner_text("#live") == "live (polling every 2 s)"
    assert queue.finish(service["db"], lease, JobState.SUCCEEDED)
    page.wait_for_selector("body[data-loaded='succeeded']", timeout=LIVE_MS)


def test_empty_states_say_why(page, service):
    """A queued job and a job that failed before its first epoch say so, instead of
    drawing empty charts."""
    http, api, db = service["http"], service["service"].api, service["db"]
    queued = http.post("/jobs", json=SPEC).json()["id"]
    reason = http.get(f"/jobs/{queued}").json()["pending_reason"]
    page.goto(f"{api}/ui/jobs/{queued}")
    page.wait_for_selector("body[data-loaded='queued']")
    assert page.inner_text("#curves-empty") == f"No epochs yet: the job is queued ({reason})."
    assert page.inner_text("#telemetry-empty") == page.inner_text("#curves-empty")
    assert page.is_hidden("#curves")
    assert page.is_hidden("#telemetry")
    assert page.inner_text("#manifest-empty") == "Not recorded yet: the job has not started."
    assert "No checkpoint yet" in page.inner_text("#checkpoints-empty")
    _shot(page, "job-queued")
    http.post(f"/jobs/{queued}/cancel")

    failed, lease = _claimed(service)
    error = "RuntimeError: CUDA out of memory (written by the test)"
    assert queue.finish(db, lease, JobState.FAILED, error=error)
    page.goto(f"{api}/ui/jobs/{failed}")
    page.wait_for_selector("body[data-loaded='failed']")
    assert error in page.inner_text("#job-error")
    assert "failed before its first epoch" in page.inner_text("#curves-empty")
    assert page.locator("svg.chart").count() == 0
    assert page.inner_text("#checkpoints-empty") == "No checkpoint was stored."
    _shot(page, "job-failed")


def test_unknown_or_another_users_ids_show_only_an_error(browser, service):
    """/ui/jobs/999999 and another user's job (the same for sweeps) show one clean message,
    not the page's empty shell under an error."""
    api, done, sweep = service["service"].api, service["done"], service["sweep"]
    token = create_token(service["db"], "dashboard-bob", user="bob")
    context, page = _signed_in(browser, api, token)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.location["url"]) if m.type == "error" else None)
    page.on("pageerror", lambda err: errors.append(str(err)))
    cases = {
        "/ui/jobs/999999": "Job #999999",
        f"/ui/jobs/{done}": f"Job #{done}",
        "/ui/sweeps/999999": "Sweep #999999",
        f"/ui/sweeps/{sweep}": f"Sweep #{sweep}",
    }
    for path, what in cases.items():
        page.goto(f"{api}{path}")
        page.wait_for_selector("body[data-loaded='missing']")
        assert page.inner_text("#not-found h1") == f"{what} not found"
        assert page.locator("main > *").count() == 1  # the message alone
        assert page.locator("#summary, .charts, svg, table").count() == 0
        if path == f"/ui/jobs/{done}":
            _shot(page, "job-not-found")
    # the one console error of each: the browser's note on the API's 404
    expected = [p.replace("/ui", "") for p in cases]
    assert [e.removeprefix(api).split("?")[0] for e in errors] == expected
    context.close()


def test_compare_view_from_the_jobs_list(page, service):
    """Two jobs ticked in the list open /ui/compare: their test accuracy and loss overlaid,
    and only the configuration fields that differ."""
    http, api, done = service["http"], service["service"].api, service["done"]
    other = http.post("/jobs", json={**SPEC, "seed": 7, "optimizer": {"weight_decay": 0.0}})
    other = other.json()["id"]
    http.post(f"/jobs/{other}/cancel")
    page.goto(f"{api}/ui/jobs")
    assert page.is_disabled("#compare")
    page.check(f"tr[data-job='{done}'] input.pick")
    page.wait_for_timeout(2500)  # a refresh of the list keeps the tick
    assert page.is_checked(f"tr[data-job='{done}'] input.pick")
    page.check(f"tr[data-job='{other}'] input.pick")
    asked: list[str] = []
    page.on(
        "request", lambda r: asked.append(r.url.removeprefix(api)) if "/ui/" not in r.url else None
    )
    page.click("#compare")
    page.wait_for_url(re.compile(rf"/ui/compare\?jobs={done},{other}$"))
    page.wait_for_selector("body[data-loaded='compared']")
    assert _attributes(page, "#diff tbody tr", "data-field") == ["optimizer.weight_decay", "seed"]
    assert _texts(page, "#diff tr[data-field='seed'] td") == ["seed", "0", "7"]
    assert _texts(page, "#diff tr[data-field='optimizer.weight_decay'] td")[1:] == ["0.0005", "0"]
    assert page.get_attribute(f"polyline[data-series='#{done}']", "data-count") == str(EPOCHS)
    colours = _attributes(page, "#chart-acc polyline", "stroke")
    assert len(colours) == len(set(colours)) == 2
    axes = _texts(page, ".axis-label")
    assert "accuracy (%)" in axes
    assert "cross-entropy loss (nats)" in axes
    best = http.get(f"/jobs/{done}").json()["best_test_acc"]
    assert _pct(best) in page.inner_text(f"#compare-jobs tr[data-job='{done}']")
    # one request: GET /compare gives the jobs, their curves and the differences
    assert [u for u in asked if "/jobs/" in u or "/compare" in u] == [
        f"/compare?jobs={done},{other}&max_points=500"
    ]
    differences = http.get("/compare", params={"jobs": f"{done},{other}"}).json()["differences"]
    assert [d["path"] for d in differences] == ["optimizer.weight_decay", "seed"]
    _shot(page, "compare")


def test_sweep_page_shows_seed_groups_and_marks_the_best_group(page, service):
    """A sweep with seeds ranked by group mean: the groups table shows each point's mean
    ± std over its seeds (as the CLI does) and marks the group the API names best, which
    is not the point of the best single trial."""
    http, api, db = service["http"], service["service"].api, service["db"]
    body = {
        "base": SPEC,
        "space": {"tau.tau_s": {"kind": "grid", "values": [0.85, 0.9]}},
        "search": "grid",
        "seeds": [0, 1],
        "rank_by": "group_mean",
        "priority": 70,
    }
    sweep = http.post("/sweeps", json=body)
    assert sweep.status_code == 201, sweep.text
    sweep = sweep.json()["id"]
    lease = queue.claim(db, "test", lease_s=120)
    assert lease.job_id == sweep
    for key, acc in (("0", 0.95), ("1", 0.50), ("2", 0.91), ("3", 0.92)):
        trial = trials.start_trial(db, lease, key)
        assert queue.record_epoch(db, trial, 1, {"test_acc": acc, "best_test_acc": acc})
        assert trials.end_trial(db, lease, key, JobState.SUCCEEDED, "")
    assert queue.finish(db, lease, JobState.SUCCEEDED)
    view = http.get(f"/sweeps/{sweep}").json()
    assert view["best_group"] == 1
    page.goto(f"{api}/ui/sweeps/{sweep}")
    page.wait_for_selector("body[data-loaded='succeeded']")
    assert page.locator("#groups tbody tr").count() == 2
    assert _attributes(page, "#groups tbody tr.best", "data-group") == ["1"]
    best = _texts(page, "#groups tr[data-group='1'] td")
    # 0.91, 0.92: mean 91.5%, sample std 0.71 points
    assert best == ["1", "0.9000", "0, 1", "2/2", "91.5 ± 0.7%", "91.5 ± 0.7%", "★ best group"]
    assert _texts(page, "#groups tr[data-group='0'] td")[4] == "72.5 ± 31.8%"
    assert "Ranked by the mean test_acc" in page.inner_text("#groups-caption")
    assert page.get_attribute("#trials tr.best", "data-trial") == str(view["best"]["trial_id"])
    assert "seed" in _texts(page, "#trial-head th")
    _shot(page, "sweep-seed-groups")


def test_a_40_layer_heat_map_stays_readable(page, service):
    """40 layers x 120 epochs: every cell drawn, rows a fixed height (the map grows taller),
    no row name overlapping another or the cells."""
    page.goto(f"{service['service'].api}/ui/jobs/{service['done']}")
    page.wait_for_selector("body[data-loaded='succeeded']")
    page.evaluate(
        """async () => {
          const { heatmap } = await import("/ui/static/heatmap.js");
          const host = document.createElement("figure");
          host.id = "heatmap-40";
          document.querySelector("main").prepend(host);
          const rows = Array.from(
            { length: 40 }, (_, i) => `stages.${i >> 3}.blocks.${i % 8}.conv${1 + (i % 2)}`);
          const columns = Array.from({ length: 120 }, (_, j) => j + 1);
          const values = rows.map(
            (_, i) => columns.map((c) => 50 * (1 + Math.sin(i / 6 + c / 30))));
          const format = (v) => `${v.toFixed(1)} % of weights`;
          heatmap(host, { rows, columns, values, unit: "% of weights", format });
        }"""
    )
    assert page.locator("#heatmap-40 rect.cell").count() == 40 * 120
    labels = page.locator("#heatmap-40 text.row-label")
    boxes = [labels.nth(i).bounding_box() for i in range(labels.count())]
    assert len(boxes) == 40
    assert all(b["height"] >= 10 for b in boxes)  # legible text
    assert all(a["y"] + a["height"] <= b["y"] + 1 for a, b in itertools.pairwise(boxes))
    first_cell = page.locator("#heatmap-40 rect.cell").first.bounding_box()
    assert max(b["x"] + b["width"] for b in boxes) <= first_cell["x"]
    page.hover("#heatmap-40 rect.cell[data-layer='stages.4.blocks.7.conv2'][data-epoch='120']")
    assert page.inner_text("#heatmap-40 .readout").startswith(
        "stages.4.blocks.7.conv2, epoch 120: "
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#heatmap-40").screenshot(path=str(SCREENSHOTS / "heatmap-40-layers.png"))


@pytest.mark.parametrize("via", ["stream", "polling"])
def test_sweep_page_is_live(page, service, via):
    """A running sweep's page follows GET /sweeps/{id}/stream (each `sweep` event is the
    whole view): a trial's new epoch appears without the page asking for the sweep again.
    With the stream cut each time, it polls instead."""
    http, api, db = service["http"], service["service"].api, service["db"]
    if via == "polling":
        page.route(
            "**/sweeps/*/stream",
            lambda route: route.fulfill(
                status=200, headers={"Content-Type": "text/event-stream"}, body="retry: 100\n\n"
            ),
        )
    one = {"tau.tau_s": {"kind": "grid", "values": [0.9]}}
    body = {"base": SPEC, "space": one, "search": "grid", "priority": 60}
    sweep = http.post("/sweeps", json=body).json()["id"]
    lease = queue.claim(db, "test", lease_s=600)
    assert lease.job_id == sweep
    trial = trials.start_trial(db, lease, "0")
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if f"/sweeps/{sweep}?" in r.url else None)
    page.goto(f"{api}/ui/sweeps/{sweep}")
    page.wait_for_selector(f"body[data-live='{'stream' if via == 'stream' else 'poll'}']")
    assert "No epochs yet" in page.inner_text("#curves-empty")
    figures = {"train_loss": 1.0, "test_loss": 1.1, "train_acc": 0.5, "test_acc": 0.4}
    assert queue.record_epoch(db, trial, 1, {**figures, "tau": 0.9, "lr": 0.1})
    curve = page.locator("#chart-trials polyline[data-series='trial 0']")
    sync_api.expect(curve).to_have_attribute("data-count", "1", timeout=LIVE_MS)
    sync_api.expect(page.locator("#trials tbody tr")).to_contain_text("40.0%")
    if via == "stream":
        assert len(asked) == 1  # the first drawing; the rest came by the stream
    assert trials.end_trial(db, lease, "0", JobState.SUCCEEDED, "")
    assert queue.finish(db, lease, JobState.SUCCEEDED)
    page.wait_for_selector("body[data-loaded='succeeded']", timeout=LIVE_MS)
    assert page.is_hidden("#live")


def test_a_chained_job_links_what_it_waits_for_and_can_be_cancelled_while_waiting(page, service):
    """A job that names others (after, init_from, distill) shows them as links, says what
    it waits for where its curves would be, lists them in its configuration, and can be
    cancelled while waiting."""
    http, api = service["http"], service["service"].api
    done = service["done"]
    queued = http.post("/jobs", json={**SPEC, "priority": -50}).json()["id"]  # its own
    body = {
        **SPEC,
        "after": [queued],
        "init_from": {"job_id": done, "checkpoint": "last"},
        "distill": {"teacher_job_id": done, "temperature": 2.0},
        "priority": -50,  # never claimed by another test's claim
    }
    chained = http.post("/jobs", json=body).json()
    assert chained["state"] == "waiting"
    page.goto(f"{api}/ui/jobs/{chained['id']}")
    page.wait_for_selector("body[data-loaded='waiting']")
    assert _attributes(page, "#summary a[data-chain]", "data-chain") == [
        str(queued),
        str(done),
        str(done),
    ]
    summary = page.inner_text("#summary")
    assert "(last checkpoint's weights)" in summary
    assert "(best, T = 2)" in summary
    assert page.inner_text("#curves-empty") == (
        f"No epochs yet: the job is waiting for job {queued} (queued) to succeed."
    )
    assert page.inner_text("dd[data-field='init_from.checkpoint']") == "last"
    assert page.inner_text("dd[data-field='distill.temperature']") == "2"
    _shot(page, "job-waiting")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#cancel")
    page.wait_for_selector("body[data-loaded='cancelled']")
    assert http.get(f"/jobs/{chained['id']}").json()["state"] == "cancelled"
