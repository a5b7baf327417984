// Live updates without a framework or CDN: every element with data-fragment is re-fetched.
(function () {
  "use strict";
  const stamp = document.getElementById("updated");
  const period = Number(document.body.dataset.refresh || "5") * 1000;
  async function refresh() {
    const parts = document.querySelectorAll("[data-fragment]");
    for (const el of parts) {
      try {
        const resp = await fetch(el.dataset.fragment, { credentials: "same-origin" });
        if (resp.status === 401) { window.location.reload(); return; }
        if (resp.ok) { el.innerHTML = await resp.text(); }
      } catch (err) {
        if (stamp) { stamp.textContent = "offline, retrying"; }
        return;
      }
    }
    if (stamp) { stamp.textContent = "updated " + new Date().toLocaleTimeString(); }
  }
  if (document.querySelector("[data-fragment]")) { setInterval(refresh, period); }
})();
