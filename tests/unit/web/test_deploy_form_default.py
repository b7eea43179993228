"""The app page's Deploy form pre-selects the newest image whose tests passed and that was never
rolled back, and says which (issue 17, item 6)."""

from __future__ import annotations

import re
import time

from sqlalchemy import update

from conveyor.store.tables import releases
from conveyor.services.views import default_image
from web_site import Site


def test_default_image_skips_failed_tests_and_rolled_back_images() -> None:
    imgs = [{"digest": "d", "test_status": "failed"}, {"digest": "c", "test_status": "passed"},
            {"digest": "b", "test_status": "passed"}, {"digest": "a", "test_status": "passed"}]
    assert default_image(imgs, []) == ("c", "the newest image whose tests passed")
    digest, why = default_image(imgs, [{"image": "c", "status": "rolled_back"}, {"image": "b", "status": "failed"}])
    assert digest == "a" and "never rolled back (2 newer ones were)" in why
    assert default_image(imgs[:1], [])[0] is None


def test_deploy_form_preselects_and_explains(web: Site) -> None:
    a = web.add_image("hello", "a", message="first")
    web.finish(web.deploy("hello", "production", a)["id"])
    time.sleep(0.01)  # images are ordered by creation time
    b = web.add_image("hello", "b", message="second")
    web.finish(web.deploy("hello", "production", b)["id"])
    with web.cp.engine.begin() as conn:  # what a rollback away from release 2 leaves behind
        conn.execute(update(releases).where(releases.c.number == 2).values(status="rolled_back"))
    time.sleep(0.01)
    web.add_image("hello", "c", test_status="failed", message="broken")
    html = web.client.get("/apps/hello").text
    selected = re.findall(r'<option value="([^"]+)"[^>]*\sselected>', html)
    assert selected == [a], selected
    assert "never rolled back (1 newer one was)" in html
    twin = web.client.get("/api/v1/apps/hello/summary").json()
    assert twin["default_image"] == a and "never rolled back" in twin["default_image_why"]
