// Live progress: rows/blocks with data-job-id are refreshed from the JSON endpoint named by
// data-poll-url on <body> while any of them is pending or running. No build step, no library.
(function () {
  "use strict";
  var url = document.body.getAttribute("data-poll-url");
  if (!url) { return; }
  var reloadOnFinal = document.body.hasAttribute("data-reload-on-final");

  function active() {
    return Array.prototype.filter.call(document.querySelectorAll("[data-job-id]"), function (el) {
      return el.getAttribute("data-final") !== "true";
    });
  }

  function update(el, job) {
    var status = el.querySelector(".status");
    if (status) { status.textContent = job.status; status.className = "status status-" + job.status; }
    var bar = el.querySelector("progress");
    if (bar) { bar.value = job.percentage; }
    var pct = el.querySelector(".pct");
    if (pct) { pct.textContent = job.percentage + "%"; }
    var err = el.querySelector(".error");
    if (err) { err.textContent = job.error || ""; }
    el.setAttribute("data-status", job.status);
    if (job.final) {
      el.setAttribute("data-final", "true");
      if (reloadOnFinal) { window.location.reload(); }
    }
  }

  function poll() {
    var els = active();
    if (!els.length) { return; }
    var ids = els.map(function (el) { return el.getAttribute("data-job-id"); });
    var sep = url.indexOf("?") >= 0 ? "&" : "?";
    fetch(url + sep + "ids=" + encodeURIComponent(ids.join(",")), { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : { jobs: [] }; })
      .then(function (body) {
        body.jobs.forEach(function (job) {
          document.querySelectorAll('[data-job-id="' + job.id + '"]').forEach(function (el) { update(el, job); });
        });
      })
      .catch(function () {})
      .then(function () { window.setTimeout(poll, 1000); });
  }

  window.setTimeout(poll, 500);
})();
