// klingmon dashboard: live updates over server-sent events, table sorting.
// Plain JavaScript, no build step, no third-party code.
(() => {
  "use strict";
  const live = document.getElementById("live");
  const badge = document.getElementById("live-state");
  let sort = null; // {col, desc}

  function setState(text, cls) {
    if (!badge) return;
    badge.textContent = text;
    badge.className = "live-state " + cls;
  }

  // -- sorting ----------------------------------------------------------------
  function cellValue(row, col, numeric) {
    const cell = row.children[col];
    if (!cell) return "";
    const raw = cell.dataset.v !== undefined ? cell.dataset.v : cell.textContent.trim();
    return numeric ? parseFloat(raw) || 0 : raw.toLowerCase();
  }

  function applySort() {
    const table = document.getElementById("task-table");
    if (!table || !sort) return;
    const button = table.querySelector(`button[data-sort="${sort.col}"]`);
    const numeric = button && button.hasAttribute("data-num");
    const body = table.tBodies[0];
    const rows = Array.from(body.rows);
    rows.sort((a, b) => {
      const x = cellValue(a, sort.col, numeric), y = cellValue(b, sort.col, numeric);
      return (x < y ? -1 : x > y ? 1 : 0) * (sort.desc ? -1 : 1);
    });
    rows.forEach((r) => body.appendChild(r));
    table.querySelectorAll("th").forEach((th, i) => {
      th.setAttribute("aria-sort", i === sort.col ? (sort.desc ? "descending" : "ascending") : "none");
    });
  }

  document.addEventListener("click", (ev) => {
    const button = ev.target.closest("button[data-sort]");
    if (!button) return;
    const col = parseInt(button.dataset.sort, 10);
    sort = { col, desc: sort && sort.col === col ? !sort.desc : false };
    applySort();
  });

  // -- live updates -------------------------------------------------------------
  // Children with an id are matched by id; an unchanged element is left alone (a
  // playing video keeps playing), a changed one is replaced, or merged when it is a
  // [data-keyed] list.
  function sync(oldParent, newParent) {
    const old = new Map();
    for (const child of Array.from(oldParent.children)) {
      if (child.id) old.set(child.id, child);
      else child.remove();
    }
    const wanted = [];
    for (const node of Array.from(newParent.children)) {
      const keep = node.id ? old.get(node.id) : undefined;
      if (!keep) { wanted.push(node); continue; }
      old.delete(node.id);
      if (keep.isEqualNode(node)) {
        wanted.push(keep);
      } else if (keep.hasAttribute("data-keyed") && node.hasAttribute("data-keyed")) {
        sync(keep, node);
        wanted.push(keep);
      } else if (keep.querySelector("[data-keyed]")) {
        mergeSection(keep, node);
        wanted.push(keep);
      } else {
        keep.remove();
        wanted.push(node);
      }
    }
    for (const gone of old.values()) gone.remove();
    // Move only what is out of place: a playing video is never taken out.
    wanted.forEach((node, i) => {
      const at = oldParent.children[i];
      if (at !== node) oldParent.insertBefore(node, at || null);
    });
  }

  // A section holding a keyed list: replace its other parts, merge the list.
  function mergeSection(oldEl, newEl) {
    const oldLists = oldEl.querySelectorAll("[data-keyed]");
    const newLists = newEl.querySelectorAll("[data-keyed]");
    if (oldLists.length !== newLists.length) { oldEl.replaceWith(newEl); return; }
    newLists.forEach((list, i) => { sync(oldLists[i], list); list.replaceWith(oldLists[i]); });
    oldEl.replaceChildren(...Array.from(newEl.childNodes));
  }

  // A keyboard user's focus survives an update that replaced the focused element:
  // it moves to the element that took its place (same id, or same sort column).
  function refocus(focused) {
    if (!focused || document.contains(focused)) return;
    let next = null;
    if (focused.id) next = document.getElementById(focused.id);
    else if (focused.dataset && focused.dataset.sort !== undefined) {
      next = document.querySelector(`button[data-sort="${focused.dataset.sort}"]`);
    }
    if (next) next.focus();
  }

  if (live && live.dataset.stream && "EventSource" in window) {
    let mark = live.dataset.mark;
    let busy = false, again = false;

    async function refresh() {
      if (busy) { again = true; return; }
      busy = true;
      try {
        const url = new URL(window.location.href);
        url.searchParams.set("fragment", "1");
        const answer = await fetch(url, { credentials: "same-origin", cache: "no-store" });
        if (answer.ok) {
          const template = document.createElement("template");
          template.innerHTML = await answer.text();
          const focused = document.activeElement;
          sync(live, template.content);
          refocus(focused);
          applySort();
          live.dataset.mark = mark;
          document.dispatchEvent(new CustomEvent("klingmon:updated", { detail: mark }));
        }
      } catch (err) {
        setState("reconnecting…", "off");
      } finally {
        busy = false;
        if (again) { again = false; refresh(); }
      }
    }

    const source = new EventSource(live.dataset.stream);
    source.onopen = () => setState("live", "on");
    source.onerror = () => setState("reconnecting…", "off");
    source.onmessage = (ev) => {
      const next = JSON.parse(ev.data).mark;
      if (next !== mark) { mark = next; refresh(); }
    };
  }
})();
