// The labeling screen: keyboard control, the prefetched next item shown at once on submit, and a form that keeps
// its values when a submit fails. Loaded as a file (the CSP allows no inline script); htmx does the requests.
(function () {
  "use strict";
  const workspace = document.getElementById("workspace");
  if (!workspace) return;
  const current = document.getElementById("current");
  const pending = document.getElementById("pending");
  const prefetch = document.getElementById("prefetch");
  const banner = document.getElementById("label-error");
  const help = document.getElementById("help");
  let active = 0;
  let shownAt = performance.now();

  const form = () => current.querySelector("form.item-form");
  const fieldsets = () => Array.from(form()?.querySelectorAll("fieldset.criterion") || []);

  function say(message) {
    banner.textContent = message || "";
    banner.hidden = !message;
  }

  function setActive(index) {
    const sets = fieldsets();
    if (!sets.length) return;
    active = Math.max(0, Math.min(index, sets.length - 1));
    sets.forEach((fs, i) => fs.classList.toggle("active", i === active));
    const fs = sets[active];
    const radio = fs.querySelector("input:checked") || fs.querySelector("input[type=radio]");
    if (radio) radio.focus({ preventScroll: true });
    fs.scrollIntoView({ block: "nearest" });
  }

  function choose(position) {
    const fs = fieldsets()[active];
    if (!fs) return;
    const radios = fs.querySelectorAll("input[type=radio]");
    if (position >= radios.length) return;
    radios[position].checked = true;
    if (active < fieldsets().length - 1) setActive(active + 1);
    else form().querySelector("button.submit").focus();
  }

  function missing(f) {
    return Array.from(f.querySelectorAll("fieldset.criterion")).filter(
      (fs) => !fs.querySelector("input:checked"),
    );
  }

  function showItem() {
    shownAt = performance.now();
    active = 0;
    if (form()) setActive(0);
    else current.querySelector("a")?.focus();
  }

  // Before a submit leaves: every criterion needs a value; record the time spent.
  workspace.addEventListener(
    "submit",
    (event) => {
      const f = event.target;
      const submitter = event.submitter;
      if (submitter && submitter.classList.contains("skip")) return;
      const gaps = missing(f);
      const error = f.querySelector(".form-error");
      if (gaps.length) {
        event.preventDefault();
        event.stopImmediatePropagation();
        error.textContent = "Choose a value for: " + gaps.map((fs) => fs.querySelector("legend").textContent.trim().replace(/^\d+\s*/, "")).join(", ") + ".";
        error.hidden = false;
        setActive(fieldsets().indexOf(gaps[0]));
        return;
      }
      error.hidden = true;
      f.querySelector("input[name=time_spent_ms]").value = String(Math.round(performance.now() - shownAt));
    },
    true,
  );

  // The request is on its way: show the prefetched item now, keep the submitted form aside until the server answers.
  workspace.addEventListener("htmx:beforeRequest", (event) => {
    const f = event.detail.elt.closest("form.item-form");
    if (!f || !current.contains(f)) return;
    say("");
    pending.replaceChildren(f);
    current.replaceChildren(...prefetch.childNodes);
    showItem();
  });

  workspace.addEventListener("htmx:afterRequest", (event) => {
    const f = event.detail.elt.closest("form.item-form");
    if (!f || !pending.contains(f)) return;
    const xhr = event.detail.xhr;
    if (event.detail.successful) {
      pending.replaceChildren();
      return;
    }
    const text = (xhr && xhr.status && xhr.responseText ? new DOMParser().parseFromString(xhr.responseText, "text/html").body.textContent : "").trim();
    if (xhr && xhr.status === 410) {
      // The item no longer needs this annotator's labels: nothing to retry, carry on with the next one.
      pending.replaceChildren();
      say(text);
      return;
    }
    // Not saved: put the annotator back on the same form, still filled in, and keep the next item ready.
    prefetch.replaceChildren(...current.childNodes);
    current.replaceChildren(f);
    f.querySelectorAll("button").forEach((b) => (b.disabled = false));
    say(text || "Not saved: the connection failed. Your choices are kept; press Enter to try again.");
    showItem();
  });

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    const typing = target instanceof HTMLTextAreaElement || (target instanceof HTMLInputElement && target.type === "text");
    if (help.open) return;
    if (typing) {
      if (event.key === "Escape") {
        target.blur();
        setActive(active);
      }
      return;
    }
    const pairwise = workspace.dataset.kind === "pairwise";
    const key = event.key;
    let handled = true;
    if (key === "?") help.showModal();
    else if (key === "j") setActive(active + 1);
    else if (key === "k") setActive(active - 1);
    else if (key === "1" || (!pairwise && key === "p")) choose(0);
    else if (key === "2" || (!pairwise && key === "f")) choose(1);
    else if (pairwise && (key === "3" || key === "t")) choose(2);
    else if (key === "n") form()?.querySelector("textarea[name=note]")?.focus();
    else if (key === "s") form()?.querySelector("button.skip")?.click();
    else if (key === "u") document.getElementById("undo-form").requestSubmit();
    else if (key === "Enter" && form() && !(target instanceof HTMLButtonElement) && !(target instanceof HTMLAnchorElement)) {
      form().requestSubmit(form().querySelector("button.submit"));
    } else handled = false;
    if (handled) event.preventDefault();
  });

  // Keep the leases alive while the page is open (they expire on their own when it is closed).
  const beat = workspace.dataset.heartbeat;
  const token = JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"];
  setInterval(() => {
    fetch(beat, { method: "POST", headers: { "X-CSRFToken": token }, credentials: "same-origin" }).catch(() => {});
  }, 120000);

  document.getElementById("help-open").addEventListener("click", () => help.showModal());
  fieldsets().forEach((fs, i) => fs.addEventListener("focusin", () => { active = i; fieldsets().forEach((o, j) => o.classList.toggle("active", j === i)); }));
  workspace.addEventListener("focusin", (event) => {
    const fs = event.target.closest && event.target.closest("fieldset.criterion");
    if (fs && current.contains(fs)) {
      active = fieldsets().indexOf(fs);
      fieldsets().forEach((o, j) => o.classList.toggle("active", j === active));
    }
  });
  showItem();
})();
