"""Every API endpoint and page on SQLite and PostgreSQL, over a study driven through the store by two
workers whose names, like the study's, a parameter's and the objective metric's, are script payloads."""

from __future__ import annotations

from urllib.parse import quote

from starlette.testclient import TestClient

from hpsearch.store import NewFinalJob, Store

from .helpers import PAYLOAD, payload_study, run_one, two_workers

NAME = quote(PAYLOAD, safe="")


def _drive(store: Store) -> tuple[int, int]:
    study = payload_study(store)
    first, second = two_workers(store)
    for worker in (first, second, first):
        run_one(store, study, worker)
    run_one(store, study, second, fail=True)
    running = store.claim(first, study.id)  # trial 4: RUNNING on the first worker, one epoch in
    assert running is not None
    store.record_epoch(running.trial_id, first, 1, {PAYLOAD: 0.3, "loss": 0.7}, PAYLOAD, "max")
    best = store.trial(study.id, 2).id
    store.create_final_job(NewFinalJob(study_id=study.id, trial_id=best, params={}, train_on="train", epochs=3, seed=1))
    return study.id, first


def test_the_json_api_answers_every_endpoint(store: Store, client: TestClient) -> None:
    _drive(store)
    [study] = client.get("/api/studies").json()
    assert (study["name"], study["completed"], study["failed"], study["running"]) == (PAYLOAD, 3, 1, 1)
    assert study["queued"] == 35 and study["workers_alive"] == 1 and study["finished"] == 4

    detail = client.get(f"/api/studies/{NAME}").json()
    assert detail["counts"]["COMPLETED"] == 3 and detail["best"]["number"] == 2
    assert detail["objective_name"] == PAYLOAD

    page = client.get(f"/api/studies/{NAME}/trials?state=COMPLETED,failed&sort=objective&order=desc&limit=2").json()
    # The failed trial 3 reported the highest value before failing: it sorts first.
    assert page["total"] == 4 and [t["number"] for t in page["trials"]] == [3, 2]
    assert page["trials"][0]["worker"] == f"{PAYLOAD}-1"  # trial 3 ran on the second worker
    rest = client.get(f"/api/studies/{NAME}/trials?state=COMPLETED,FAILED&sort=objective&order=desc&limit=2&offset=2")
    assert [t["number"] for t in rest.json()["trials"]] == [1, 0]
    every = client.get(f"/api/studies/{NAME}/trials?limit=1000").json()
    assert every["total"] == 40 and [t["number"] for t in every["trials"]] == list(range(40))

    trial = client.get(f"/api/studies/{NAME}/trials/4").json()
    assert trial["trial"]["state"] == "RUNNING" and set(trial["metrics"]) == {PAYLOAD, "loss"}
    assert trial["metrics"][PAYLOAD] == [[1, 0.3]] and len(trial["attempts"]) == 1
    assert client.get(f"/api/studies/{NAME}/trials/3").json()["trial"]["error"] == f"ValueError: {PAYLOAD}"

    workers = client.get("/api/workers").json()
    assert {w["name"] for w in workers} == {f"{PAYLOAD}-0", f"{PAYLOAD}-1"}
    busy = next(w for w in workers if w["current"])
    assert busy["current"]["number"] == 4 and busy["current"]["study"] == PAYLOAD and busy["alive"]

    final = client.get(f"/api/studies/{NAME}/final").json()
    assert [(j["state"], j["trial_number"]) for j in final["jobs"]] == [("QUEUED", 2)]
    assert client.get("/api/health").json() == {"ok": True, "studies": 1}


def test_bad_input_is_one_line_naming_it(store: Store, client: TestClient) -> None:
    _drive(store)
    answers = {
        f"/api/studies/{NAME}/trials?state=DONE": (400, "state: unknown trial state 'DONE'"),
        f"/api/studies/{NAME}/trials?limit=0": (400, "limit: 0 is outside 1..1000"),
        f"/api/studies/{NAME}/trials?sort=colour": (400, "sort: unknown sort key 'colour'"),
        f"/api/studies/{NAME}/trials?offset=x": (400, "offset: 'x' is not an integer"),
        "/api/studies/nope": (404, "study nope: no such study"),
        f"/api/studies/{NAME}/trials/99": (404, "trial 99: no such trial"),
        "/api/nothing": (404, "/api/nothing: no such API endpoint"),
    }
    for path, (status, message) in answers.items():
        response = client.get(path)
        assert response.status_code == status, path
        assert response.json()["error"].startswith(message), (path, response.json())
    assert client.get("/studies/nope").status_code == 404


def test_pages_render_and_show_user_strings_only_as_text(store: Store, client: TestClient) -> None:
    _drive(store)
    for path in ("/", "/workers", f"/studies/{NAME}", f"/studies/{NAME}/trials/3", f"/studies/{NAME}/final"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert PAYLOAD not in response.text and "<script>alert" not in response.text, path
        assert "&lt;/script&gt;&lt;script&gt;alert(1)" in response.text or "\\u003c/script" in response.text, path
    live = client.get(f"/live/studies/{NAME}").json()
    keys = [s["key"] for s in live["sections"]]
    assert keys[:3] == ["summary", "history", "parallel"] and "final" in keys
    assert live["sections"][1]["figure"]["data"]  # the history figure, as plotly JSON
    assert 'data-count="COMPLETED">3<' in live["sections"][0]["html"]
    assert client.get("/static/plotly.min.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/dashboard.js").status_code == 200
    assert client.get("/static/other.js").status_code == 404


def test_live_json_and_api_answer_304_until_the_study_moves(store: Store, client: TestClient) -> None:
    study_id, _ = _drive(store)
    client.get(f"/live/studies/{NAME}")
    client.app.state.dashboard.importances.wait()  # type: ignore[attr-defined]  # its result changes the ETag
    etag = client.get(f"/live/studies/{NAME}").headers["etag"]
    assert client.get(f"/live/studies/{NAME}", headers={"If-None-Match": etag}).status_code == 304
    trials = f"/api/studies/{NAME}/trials"
    api = client.get(trials)
    assert client.get(trials, headers={"If-None-Match": api.headers["etag"]}).status_code == 304
    run_one(store, store.study_by_id(study_id), store.register_worker("third", "h", 1, None))
    moved = client.get(f"/live/studies/{NAME}", headers={"If-None-Match": etag})
    assert moved.status_code == 200 and moved.headers["etag"] != etag
    assert 'data-count="COMPLETED">4<' in moved.json()["sections"][0]["html"]
