// usermon dashboard: the one script (the Content-Security-Policy allows no other).
// It shows times in the viewer's time zone and adds new findings to a live table without a
// reload, by polling /live/findings. Everything it inserts goes in as text, never as HTML.
"use strict";

(function () {
  const format = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
  });
  const compact = new Intl.DateTimeFormat(undefined, { dateStyle: "short", timeStyle: "short" });

  function localize(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      const when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when)) {
        el.title = format.format(when);
        el.textContent = el.closest("td") ? compact.format(when) : format.format(when);
      }
    });
    root.querySelectorAll("tspan[data-utc]").forEach(function (el) {
      const when = new Date(el.getAttribute("data-utc"));
      if (!isNaN(when)) el.textContent = compact.format(when);
    });
  }

  function cell(text, className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    td.textContent = text;
    return td;
  }

  function link(href, text) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    return a;
  }

  function row(f) {
    const tr = document.createElement("tr");
    tr.dataset.id = f.id;
    tr.className = "fresh";
    const sev = document.createElement("span");
    sev.className = "sev sev-" + f.severity;
    sev.textContent = f.severity;
    const sevCell = cell("");
    sevCell.appendChild(sev);
    tr.appendChild(sevCell);
    const kind = cell("");
    kind.appendChild(link(f.url, f.kind));
    tr.appendChild(kind);
    const subject = cell("", "subject");
    subject.appendChild(f.subject_url ? link(f.subject_url, f.subject) : document.createTextNode(f.subject));
    tr.appendChild(subject);
    tr.appendChild(cell(f.summary, "summary"));
    tr.appendChild(cell(String(f.event_count), "num"));
    const time = document.createElement("time");
    time.setAttribute("datetime", new Date(f.last_seen * 1000).toISOString());
    time.textContent = new Date(f.last_seen * 1000).toISOString();
    const timeCell = cell("", "time");
    timeCell.appendChild(time);
    tr.appendChild(timeCell);
    localize(tr);
    return tr;
  }

  function live(table) {
    let after = parseFloat(table.dataset.after || "0") || 0;
    const body = table.tBodies[0];
    async function poll() {
      try {
        const response = await fetch("/live/findings?after=" + encodeURIComponent(after), {
          credentials: "same-origin", headers: { Accept: "application/json" },
        });
        if (!response.ok) return;
        const data = await response.json();
        const rows = data.findings || [];
        for (let i = rows.length - 1; i >= 0; i--) {
          const f = rows[i];
          const old = body.querySelector('tr[data-id="' + CSS.escape(f.id) + '"]');
          if (old) old.remove();
          const empty = body.querySelector("tr.empty");
          if (empty) empty.remove();
          body.insertBefore(row(f), body.firstChild);
          after = Math.max(after, f.last_seen);
        }
        table.dataset.after = String(after);
      } catch (e) {
        // The processor restarting or the network away: try again at the next tick.
      }
    }
    setInterval(poll, 3000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    localize(document);
    const table = document.getElementById("live-findings");
    if (table) live(table);
  });
})();
