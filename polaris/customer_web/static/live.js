// Live parts of the portal: the running session, a charger's connectors, a pairing window.
// Server-Sent Events (/api/v1/events) trigger a refresh; polling every few seconds is the
// fallback when the stream is blocked or drops. Without JavaScript the pages still work
// (they refresh themselves).
(function () {
  "use strict";
  var POLL_MS = 5000;
  // Once a form is submitted the page is leaving: a live reload must not cancel that navigation.
  var leaving = false;
  document.addEventListener("submit", function () { leaving = true; }, true);

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); });
  }

  function duration(s) {
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    function two(n) { return (n < 10 ? "0" : "") + n; }
    return h ? h + " h " + two(m) + " min" : m + " min " + two(sec) + " s";
  }

  function follow(refresh, wantsEvent) {
    var timer = setInterval(refresh, POLL_MS);
    if (window.EventSource) {
      try {
        var es = new EventSource("/api/v1/events");
        es.onmessage = refresh;
        ["session.meter", "session.started", "session.stopped", "charger.status", "pairing.tapped"].forEach(function (type) {
          es.addEventListener(type, function (ev) {
            try { if (!wantsEvent || wantsEvent(JSON.parse(ev.data))) refresh(); } catch (e) { refresh(); }
          });
        });
      } catch (e) { /* polling continues */ }
    }
    return timer;
  }

  var session = document.querySelector("[data-live-session]");
  if (session && session.dataset.running === "true") {
    var id = session.dataset.liveSession;
    var timer = follow(function () {
      getJSON("/api/v1/sessions/" + id).then(function (s) {
        session.querySelector('[data-field="energy_kwh"]').textContent = s.energy_kwh.toFixed(3);
        var p = session.querySelector('[data-field="power_kw"]');
        if (p) p.textContent = s.power_kw === null ? "–" : s.power_kw.toFixed(1);
        session.querySelector('[data-field="duration"]').textContent = duration(s.duration_s);
        session.querySelector('[data-field="cost_text"]').textContent = s.cost_text || "–";
        session.querySelector('[data-field="status_text"]').textContent = s.status_text;
        if (!s.running && !leaving) { clearInterval(timer); window.location.reload(); }
      }).catch(function () {});
    }, function (d) { return !d.transaction_id || String(d.transaction_id) === id; });
  }

  var charger = document.querySelector("[data-live-charger]");
  if (charger) {
    follow(function () {
      getJSON("/api/v1/chargers/" + charger.dataset.liveCharger).then(function (c) {
        c.connectors.forEach(function (k) {
          var li = charger.querySelector('[data-connector="' + k.connector_id + '"]');
          if (!li) return;
          li.querySelector("[data-status]").textContent = k.status_text;
          li.className = "connector " + (k.available ? "free" : "busy");
        });
      }).catch(function () {});
    }, function (d) { return d.charge_box_id === undefined || true; });
  }

  var pairing = document.querySelector("[data-live-pairing]");
  if (pairing && pairing.dataset.state === "armed") {
    // The page itself knows the outcome (link or sign in): reload it when something happened.
    setInterval(function () { if (!leaving) window.location.reload(); }, 3000);
  }
})();
