// The labeling pages: the queue (/p/<slug>/label/), the change-your-labels page that Undo and History open, and the
// lead's adjudication page (one disputed item at a time: the same keys choose the gold values, Enter saves).
//
// Keys: the page hands over its keyboard map as JSON (#keymap, the very list its `?` overlay is rendered from, see
// annotate/keymap.py) and this file acts on that map and nothing else, so the help and the keys cannot disagree.
//
// The queue: a submit leaves through htmx and the prefetched next item is shown at once. Answers may come late, out
// of order or not at all, so the page keeps three places:
//   #current   what the annotator sees: an item's form, a "Loading the next item…" card, or the empty-queue card;
//   #pending   submitted forms waiting for their answer, still filled in: a failed one comes back to #current;
//   #prefetch  items waiting to be shown, in order: every answer adds the next one at the end.
// Every request says which items the page holds (page_items), so the server answers with a lease the page lacks or
// a fresh item, never one it has; an answer repeating an item the page has, or has finished, is dropped.
// A failed submit shows a short message next to its form, chosen here from the status (or, for a refusal, the
// server's own sentence from the `label-refused` event): never the response body.
// Loaded as a file: the CSP allows no inline script.
(function () {
  "use strict";
  const workspace = document.getElementById("workspace");
  const mapData = document.getElementById("keymap");
  if (!workspace || !mapData) return;

  const onQueue = workspace.dataset.page === "queue";
  const current = document.getElementById("current");
  const pending = document.getElementById("pending");
  const prefetch = document.getElementById("prefetch");
  const refill = document.getElementById("refill");
  const help = document.getElementById("help");
  const actions = new Map();
  JSON.parse(mapData.textContent).forEach((binding) => binding.keys.forEach((key) => actions.set(key, binding.action)));

  const SAID = {
    loading: "Loading the next item…",
    dropped: "Not saved: the connection dropped. Your choices are kept; press Enter to try again.",
    server: "Not saved: the server had a problem. Your choices are kept; press Enter to try again in a moment.",
    session:
      "Not saved: your session has ended or this page is out of date. Reload the page (log in again if asked); " +
      "this item will still be in your queue.",
    gone: "This item no longer needs your label, so it was not saved. Carry on with the next one.",
    refused: "Not saved: the server refused this form. Check your choices and press Enter to try again.",
    noNext: "The next item could not be loaded. Reload the page to carry on.",
    undoWaits: "Saving your last item first; Undo opens it once it is saved.",
  };
  const MAX_MESSAGE = 300;

  let active = 0;
  let refilling = false;
  let refillFailures = 0;
  let refillProblem = ""; // why the last refill failed, when the server said
  let queueEmpty = false; // the latest answer said: nothing more for you
  let emptyCard = null; // the "Nothing left" card, shown when the queue is empty and nothing is on its way
  let undoWhenSaved = false;
  const finished = new Set(); // items whose submit or skip the server took: never shown again

  const form = () => current.querySelector("form.item-form");
  const fieldsets = () => Array.from(form()?.querySelectorAll("fieldset.criterion") || []);
  const waiting = () => (prefetch ? Array.from(prefetch.querySelectorAll(":scope > form.item-form")) : []);
  const inFlight = () => Boolean((pending && pending.children.length) || refilling);

  // --- What the annotator sees ----------------------------------------------------------------------------------

  function say(where, message) {
    const slot = where && where.querySelector(".form-error");
    if (!slot) return null;
    slot.textContent = message ? String(message).slice(0, MAX_MESSAGE) : "";
    slot.hidden = !message;
    return slot;
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
    else form().querySelector("button.submit")?.focus();
  }

  function missing(f) {
    return Array.from(f.querySelectorAll("fieldset.criterion")).filter((fs) => !fs.querySelector("input:checked"));
  }

  function loadingCard(message) {
    const card = document.createElement("section");
    card.className = "card loading";
    card.dataset.loading = "1";
    const status = document.createElement("p");
    status.className = "loading-text";
    status.setAttribute("role", "status");
    status.textContent = SAID.loading;
    const slot = document.createElement("p");
    slot.className = "form-error error";
    slot.setAttribute("role", "alert");
    slot.tabIndex = -1;
    slot.hidden = true;
    card.append(status, slot);
    if (message) say(card, message);
    return card;
  }

  // An item is shown from its beginning, with its decision controls in view: after a submit made halfway down a
  // long item, the next one starts at its top; when the page's header pushes Submit below the window, the page
  // moves up just enough (never past the item's top). From there the controls are sticky (static/css/app.css).
  function reveal(f) {
    if (f.getBoundingClientRect().top < 0) window.scrollTo(0, 0);
    const submit = f.querySelector("button.submit");
    const over = submit ? Math.ceil(submit.getBoundingClientRect().bottom - window.innerHeight) : 0;
    if (over > 0) window.scrollBy(0, Math.min(over, Math.max(0, f.getBoundingClientRect().top)));
  }

  // Put `node` (a form or a card) in front of the annotator. A form that was there goes back to the head of the
  // waiting line with its choices; a note about another item (shown on a loading card) moves onto the new form.
  function present(node, message) {
    const carried = current.querySelector("[data-loading] .form-error:not([hidden])")?.textContent || "";
    for (const old of Array.from(current.children)) {
      if (old === node) continue;
      if (old.matches("form.item-form")) prefetch.prepend(old);
      else old.remove();
    }
    if (node.parentNode !== current) current.append(node);
    if (!node.matches("form.item-form")) {
      if (message) say(node, message);
      node.querySelector("a")?.focus({ preventScroll: true });
      return;
    }
    // htmx wires swapped-in content up only when it settles, a moment later (until then it carries the "added"
    // class): a submit before that would be a plain form post. Wire it up now; htmx skips it when it settles.
    if (node.classList.contains(htmx.config.addedClass)) htmx.process(node);
    if (!node.dataset.shownAt) node.dataset.shownAt = String(performance.now());
    const gaps = missing(node);
    setActive(gaps.length && gaps.length < fieldsets().length ? fieldsets().indexOf(gaps[0]) : 0);
    reveal(node);
    // A form coming back keeps its own message unless there is a newer one.
    const slot = message || carried ? say(node, message || carried) : null;
    if (slot && message) slot.focus(); // scrolls it into view; role=alert announces it
  }

  // The annotator's form has left: show the next item, or say it is on its way (the answer to the form that just
  // left brings one, or says there is none).
  function showNext() {
    present(waiting()[0] || loadingCard());
  }

  // An answer came in (it was added at the end of #prefetch): it says whether the queue has more for this page.
  function answered() {
    refillFailures = 0;
    queueEmpty = !waiting().length && Boolean(prefetch.querySelector(":scope > [data-empty]"));
  }

  // After every answer: drop repeats, note "nothing more", and show an item the moment one is here.
  function tidy() {
    const held = new Set(finished);
    workspace.querySelectorAll("#current form.item-form, #pending form.item-form").forEach((f) => held.add(f.dataset.item));
    for (const el of Array.from(prefetch.children)) {
      if (el.matches("form.item-form")) {
        if (held.has(el.dataset.item)) el.remove();
        else held.add(el.dataset.item);
      } else {
        if (el.matches("[data-empty]")) emptyCard = el;
        el.remove();
      }
    }
    if (form()) {
      if (!waiting().length && !inFlight() && !queueEmpty) askForMore();
      return;
    }
    const next = waiting()[0];
    if (next) present(next);
    else if (inFlight() || current.querySelector("[data-empty]")) return;
    else if (queueEmpty && emptyCard) present(emptyCard);
    else if (!askForMore()) present(loadingCard(refillProblem || SAID.noNext));
  }

  // Nothing waits and nothing is on its way: ask the server for the next item. False when it will not be asked.
  function askForMore() {
    if (!refill || refilling || refillFailures >= 2) return false;
    htmx.trigger(refill, "refill");
    return true;
  }

  function notice(message) {
    const slot = say(current.firstElementChild, message);
    if (slot) slot.scrollIntoView({ block: "nearest" });
  }

  function messageFor(status, elt) {
    const refusal = (elt.dataset.refusal || "").slice(0, MAX_MESSAGE);
    if (elt.dataset.unexpected) return SAID.session;
    if (status === 0) return SAID.dropped;
    if (status >= 500) return refusal || SAID.server; // our own outage answer says what happened; others do not
    if (status === 401 || status === 403) return SAID.session;
    if (status === 410) return refusal || SAID.gone;
    return refusal || SAID.refused;
  }

  // --- The queue's requests (htmx) ------------------------------------------------------------------------------

  // The answer must be what the queue sends (item forms or the empty card); anything else (a login page after the
  // session ended, a proxy's page) is not swapped in and counts as a failure.
  function labelingAnswer(text) {
    const nodes = Array.from(new DOMParser().parseFromString(text || "", "text/html").body.children);
    return nodes.length > 0 && nodes.every((n) => n.matches("form.item-form[data-item], [data-empty]"));
  }

  if (onQueue) {
    workspace.addEventListener("htmx:configRequest", (event) => {
      const held = Array.from(workspace.querySelectorAll("form.item-form[data-item]"), (f) => f.dataset.item);
      // Sent even when empty (one blank value): a request without the field is from a client that does not say.
      event.detail.parameters.page_items = held.length ? held : "";
    });

    // The request is on its way: keep the form aside, filled in, and show the next item now.
    workspace.addEventListener("htmx:beforeRequest", (event) => {
      const elt = event.detail.elt;
      if (elt === refill) {
        refilling = true;
        return;
      }
      const f = elt.closest && elt.closest("form.item-form");
      if (!f || !current.contains(f)) return;
      say(f, "");
      delete f.dataset.refusal;
      delete f.dataset.unexpected;
      pending.append(f);
      showNext();
    });

    // A refusal's reason, for the annotator: a short sentence the server sends in the HX-Trigger header.
    workspace.addEventListener("label-refused", (event) => {
      const elt = event.target.closest && (event.target.closest("form.item-form") || event.target);
      if (elt) elt.dataset.refusal = String((event.detail && event.detail.message) || "").slice(0, MAX_MESSAGE);
    });

    workspace.addEventListener("htmx:beforeSwap", (event) => {
      const d = event.detail;
      if (d.target !== prefetch || !d.shouldSwap || labelingAnswer(d.serverResponse)) return;
      d.shouldSwap = false;
      d.isError = true;
      const elt = d.requestConfig && d.requestConfig.elt;
      if (elt) (elt.closest("form.item-form") || elt).dataset.unexpected = "1";
    });

    workspace.addEventListener("htmx:afterRequest", (event) => {
      const elt = event.detail.elt;
      const status = event.detail.xhr ? event.detail.xhr.status : 0;
      if (elt === refill) {
        refilling = false;
        if (event.detail.successful) answered();
        else {
          refillFailures += 1;
          refillProblem = refill.dataset.refusal || "";
        }
        delete refill.dataset.refusal;
        delete refill.dataset.unexpected;
        tidy();
        return;
      }
      const f = elt.closest && elt.closest("form.item-form");
      if (!f || !pending.contains(f)) return;
      if (event.detail.successful) {
        finished.add(f.dataset.item);
        f.remove();
        answered();
      } else if (status === 410) {
        // Nothing to retry: the item has all its labels. Say so next to what the annotator looks at, and go on.
        finished.add(f.dataset.item);
        f.remove();
        notice(messageFor(status, f));
      } else {
        // Not saved: this form comes back in front of the annotator, still filled in; what they had moved on to
        // waits, with its choices, at the head of the line.
        undoWhenSaved = false;
        f.querySelectorAll("button").forEach((b) => (b.disabled = false));
        present(f, messageFor(status, f));
      }
      tidy();
      if (undoWhenSaved && !pending.children.length) {
        undoWhenSaved = false;
        document.getElementById("undo-form").requestSubmit();
      }
    });
  }

  // --- Both pages: the client-side check before a submit leaves ---------------------------------------------------

  workspace.addEventListener(
    "submit",
    (event) => {
      const f = event.target;
      if (!(f instanceof HTMLFormElement) || !f.matches("form.item-form")) return;
      if (event.submitter && event.submitter.classList.contains("skip")) return;
      const gaps = missing(f);
      if (gaps.length) {
        event.preventDefault();
        event.stopImmediatePropagation();
        const names = gaps.map((fs) => fs.querySelector("legend").textContent.trim().replace(/^\d+\s*/, ""));
        say(f, "Choose a value for: " + names.join(", ") + ".");
        setActive(fieldsets().indexOf(gaps[0]));
        return;
      }
      say(f, "");
      const spent = f.querySelector("input[name=time_spent_ms]");
      if (spent) spent.value = String(Math.max(0, Math.round(performance.now() - Number(f.dataset.shownAt || 0))));
    },
    true,
  );

  // --- Keys -------------------------------------------------------------------------------------------------------

  function undo() {
    const undoForm = document.getElementById("undo-form");
    if (!undoForm) return;
    if (pending && pending.children.length) {
      // Leaving now would abort the submit on its way and Undo would open the item before it.
      undoWhenSaved = true;
      notice(SAID.undoWaits);
      return;
    }
    undoForm.requestSubmit();
  }

  function run(action, target) {
    if (action.startsWith("choose:")) {
      choose(Number(action.slice("choose:".length)));
      return true;
    }
    switch (action) {
      case "next":
        setActive(active + 1);
        return true;
      case "prev":
        setActive(active - 1);
        return true;
      case "note":
        form()?.querySelector("textarea[name=note]")?.focus();
        return true;
      case "submit": {
        // Enter on a button or a link does what that button or link does.
        if (target instanceof HTMLButtonElement || target instanceof HTMLAnchorElement) return false;
        const f = form();
        if (f) f.requestSubmit(f.querySelector("button.submit"));
        return true;
      }
      case "skip":
        form()?.querySelector("button.skip")?.click();
        return true;
      case "undo":
        undo();
        return true;
      case "next-unresolved": {
        const link = workspace.querySelector("a.next-unresolved");
        if (link) window.location.assign(link.href);
        return true;
      }
      case "cancel": {
        const link = workspace.querySelector("a.cancel");
        if (link) window.location.assign(link.href);
        return true;
      }
      case "help":
        help.showModal();
        return true;
      default:
        return false;
    }
  }

  function typing(target) {
    if (target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement) return true;
    if (target instanceof HTMLInputElement) return !["radio", "checkbox", "button", "submit", "reset"].includes(target.type);
    return Boolean(target && target.isContentEditable);
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    const target = event.target;
    const action = actions.get(event.key);
    if (help.open) {
      // The dialog closes itself on Escape; "?" toggles it.
      if (action === "help") {
        event.preventDefault();
        help.close();
      }
      return;
    }
    if (typing(target)) {
      if (event.key === "Escape") {
        event.preventDefault();
        target.blur();
        setActive(active);
      }
      return;
    }
    if (action && run(action, target)) {
      event.preventDefault();
      return;
    }
    // The browser's own arrow navigation between radios would record a choice nobody made (← from Left wraps to
    // Tie): left and right arrows never move a criterion's selection.
    const radio = target instanceof HTMLInputElement && target.type === "radio" && target.closest("fieldset.criterion");
    if (radio && (event.key === "ArrowLeft" || event.key === "ArrowRight")) event.preventDefault();
  });

  document.getElementById("help-open")?.addEventListener("click", () => help.showModal());
  workspace.addEventListener("focusin", (event) => {
    const fs = event.target.closest && event.target.closest("fieldset.criterion");
    if (fs && current.contains(fs)) {
      active = fieldsets().indexOf(fs);
      fieldsets().forEach((o, j) => o.classList.toggle("active", j === active));
    }
  });

  // Keep the leases alive while the page is open (they expire on their own when it is closed).
  const beat = workspace.dataset.heartbeat;
  if (beat) {
    const token = JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"];
    setInterval(() => {
      fetch(beat, { method: "POST", headers: { "X-CSRFToken": token }, credentials: "same-origin" }).catch(() => {});
    }, 120000);
  }

  if (onQueue) {
    answered();
    tidy();
  }
  const shown = form();
  if (shown) present(shown, shown.querySelector(".form-error:not([hidden])")?.textContent || "");
  else current.querySelector("a")?.focus({ preventScroll: true });
})();
