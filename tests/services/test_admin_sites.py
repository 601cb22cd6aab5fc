"""Admin API, sites: grid limits, circuits and chargers' ranges, audited; the live view; bad input refused."""

from __future__ import annotations

from polaris.db.repos import charge_boxes

BASE = "/api/admin/v1/sites"
KEY = "charger-key-0123456789"


async def test_set_a_site_its_circuits_and_a_chargers_range_then_read_it_back(api, pool, operator):
    async with pool.acquire() as conn:
        await charge_boxes.add_charge_boxes(conn, ["S-1"], KEY, site_name="Garage")
    resp = await api.put(f"{BASE}/Garage", json={"limit_amps": 63, "margin_amps": 3, "policy": "first_come"},
                         headers=operator.headers)
    assert resp.status == 200, await resp.text()
    site = await resp.json()
    assert (site["limit_amps"], site["phases"], site["margin_amps"], site["policy"]) == (63, 3, 3, "first_come")
    resp = await api.put(f"{BASE}/Garage/circuits/row-A", json={"limit_amps": 32}, headers=operator.headers)
    assert resp.status == 200 and (await resp.json())["limit_amps"] == 32
    resp = await api.patch("/api/admin/v1/chargers/S-1/load", json={"circuit": "row-A", "max_amps": 16},
                           headers=operator.headers)
    assert resp.status == 200 and await resp.json() == {"circuit": "row-A", "min_amps": None, "max_amps": 16}

    detail = await (await api.get(f"{BASE}/Garage", headers=operator.headers)).json()
    assert detail["circuits"][0]["name"] == "row-A"
    assert detail["chargers"] == [{"charge_box_id": "S-1", "connected": False, "circuit": "row-A",
                                   "min_amps": None, "max_amps": 16.0}]
    listed = await (await api.get(BASE, headers=operator.headers)).json()
    assert [(s["name"], s["chargers"]) for s in listed["items"]] == [("Garage", 1)]
    audit = await (await api.get("/api/admin/v1/audit", headers=operator.headers)).json()
    actions = {e["action"] for e in audit["items"] if e["actor_email"] == operator.email}
    assert {"site.limits", "site.circuit", "charger.load"} <= actions


async def test_bad_limits_are_refused_and_change_nothing(api, pool, operator):
    resp = await api.put(f"{BASE}/Lot", json={"limit_amps": 10, "margin_amps": 12}, headers=operator.headers)
    assert resp.status == 400 and "margin_amps" in (await resp.json())["message"]
    resp = await api.put(f"{BASE}/Lot", json={"phases": 2}, headers=operator.headers)
    assert resp.status == 400
    assert (await api.get(f"{BASE}/Lot", headers=operator.headers)).status == 404
    resp = await api.put(f"{BASE}/Nowhere/circuits/a", json={"limit_amps": 10}, headers=operator.headers)
    assert resp.status == 404
    resp = await api.patch("/api/admin/v1/chargers/NOPE/load", json={"max_amps": 16}, headers=operator.headers)
    assert resp.status == 404
    resp = await api.put(f"{BASE}/Lot", json={"limit_amps": 40})
    assert resp.status == 401
