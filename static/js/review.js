// Error analysis pages: the review screen (/p/<slug>/review/) and the lead's grouping board (/p/<slug>/failure-modes/).
// Loaded as a file: the CSP allows no inline script. Every action here presses a real form's button, so the pages
// work the same without JavaScript (forms keep their action) and htmx does the posting.
(function () {
  "use strict";

  function typing(target) {
    return target instanceof HTMLElement && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }

  // --- Review: P pass, F fail (then the note), Enter or Ctrl+Enter saves. ---------------------------------------
  function reviewForm() {
    return document.querySelector("#review form.review-form");
  }

  function focusReview() {
    const form = reviewForm();
    if (!form) return;
    const error = form.querySelector(".form-error:not([hidden])");
    const note = form.querySelector("textarea[name=note]");
    if (error && note) note.focus();
    else form.querySelector("input[name=verdict]:checked, input[name=verdict]").focus();
  }

  document.addEventListener("keydown", function (event) {
    const form = reviewForm();
    if (!form || event.altKey || event.metaKey) return;
    const inNote = event.target instanceof HTMLTextAreaElement;
    if (event.key === "Enter" && (event.ctrlKey || !typing(event.target) || event.target.type === "radio")) {
      if (inNote && !event.ctrlKey) return;
      event.preventDefault();
      form.requestSubmit();
      return;
    }
    if (typing(event.target) && event.target.type !== "radio") return;
    if (event.ctrlKey) return;
    const key = event.key.toLowerCase();
    if (key === "p" || key === "f") {
      event.preventDefault();
      const radio = form.querySelector(`input[name=verdict][value=${key === "p" ? "pass" : "fail"}]`);
      radio.checked = true;
      if (key === "f") form.querySelector("textarea[name=note]").focus();
      else radio.focus();
    }
  });

  // --- The grouping board: J/K move, 1-9 assign, 0 unassign, N new mode from the note; drag and drop. -----------
  let focusAfterSwap = null;
  // htmx binds the forms of new content only when it settles it (a few ms after the swap): a form submitted before
  // would go without htmx and reload the page. So one move at a time; a key pressed meanwhile waits for the settle.
  let busy = false;
  let queued = null;

  function noteRows() {
    return Array.from(document.querySelectorAll("#board .note-row"));
  }

  function assign(row, modeId) {
    if (busy) {
      queued = [row.dataset.note, modeId];
      return;
    }
    const form = row.querySelector("form.assign");
    const select = form.querySelector("select[name=mode]");
    if (!Array.from(select.options).some((o) => o.value === modeId)) return;
    const rows = noteRows();
    const at = rows.indexOf(row);
    // After the board comes back, focus the note that followed this one in the same list, else the same place.
    const next = rows[at + 1];
    focusAfterSwap = next ? next.dataset.note : row.dataset.note;
    select.value = modeId;
    busy = true;
    form.requestSubmit();
  }

  function modeIdAt(position) {
    const select = document.querySelector("#board form.assign select[name=mode]");
    if (!select) return null;
    const option = select.options[position];  // option 0 is "Unassigned"
    return option ? option.value : null;
  }

  document.addEventListener("keydown", function (event) {
    const board = document.getElementById("board");
    if (!board || typing(event.target) || event.ctrlKey || event.altKey || event.metaKey) return;
    const row = event.target instanceof HTMLElement ? event.target.closest(".note-row") : null;
    const rows = noteRows();
    const key = event.key.toLowerCase();
    if (key === "j" || key === "k") {
      event.preventDefault();
      const at = row ? rows.indexOf(row) : -1;
      const to = rows[Math.min(rows.length - 1, Math.max(0, at + (key === "j" ? 1 : -1)))];
      if (to) to.focus();
      return;
    }
    if (!row) return;
    if (/^[0-9]$/.test(key)) {
      const modeId = key === "0" ? "" : modeIdAt(Number(key));
      if (modeId === null) return;
      event.preventDefault();
      assign(row, modeId);
    } else if (key === "n") {
      event.preventDefault();
      document.getElementById("new-mode-note").value = row.dataset.note;
      const said = document.getElementById("new-mode-from");
      said.textContent = "The new mode starts with the focused note.";
      said.hidden = false;
      document.getElementById("new-mode-name").focus();
    }
  });

  document.addEventListener("dragstart", function (event) {
    const row = event.target instanceof HTMLElement ? event.target.closest("#board .note-row") : null;
    if (!row) return;
    event.dataTransfer.setData("text/plain", row.dataset.note);
    event.dataTransfer.effectAllowed = "move";
  });
  document.addEventListener("dragover", function (event) {
    const zone = event.target instanceof HTMLElement ? event.target.closest("#board [data-drop-mode]") : null;
    if (!zone) return;
    event.preventDefault();
    zone.classList.add("drop-here");
  });
  document.addEventListener("dragleave", function (event) {
    const zone = event.target instanceof HTMLElement ? event.target.closest("#board [data-drop-mode]") : null;
    if (zone) zone.classList.remove("drop-here");
  });
  document.addEventListener("drop", function (event) {
    const zone = event.target instanceof HTMLElement ? event.target.closest("#board [data-drop-mode]") : null;
    if (!zone) return;
    event.preventDefault();
    zone.classList.remove("drop-here");
    const row = document.querySelector(`#board .note-row[data-note="${CSS.escape(event.dataTransfer.getData("text/plain"))}"]`);
    if (row) assign(row, zone.dataset.dropMode);
  });

  // After a swap: the review card starts again at the verdict once htmx has settled it (its form is bound then). On
  // the board the focused note is gone: the focus goes to the note that was asked for (the one after it), else to
  // the first unassigned note; once settled, a key that came meanwhile is applied.
  function placeFocus(event) {
    if (document.getElementById("review")) {
      if (event.type === "htmx:afterSettle") focusReview();
      return;
    }
    const board = document.getElementById("board");
    if (!board) return;
    if (event.type === "htmx:afterSettle") {
      busy = false;
      const next = queued;
      queued = null;
      const row = next && board.querySelector(`.note-row[data-note="${CSS.escape(next[0])}"]`);
      if (row) assign(row, next[1]);
      return;
    }
    if (board.contains(document.activeElement) && document.activeElement !== board) return;
    const wanted = focusAfterSwap && board.querySelector(`.note-row[data-note="${CSS.escape(focusAfterSwap)}"]`);
    focusAfterSwap = null;
    const target = wanted || board.querySelector(".unassigned .note-row");
    if (target) target.focus();
  }

  document.addEventListener("htmx:afterSwap", placeFocus);
  document.addEventListener("htmx:afterSettle", placeFocus);
  ["htmx:responseError", "htmx:sendError"].forEach((name) =>
    document.addEventListener(name, () => {
      busy = false;
      queued = null;
    }),
  );

  document.addEventListener("DOMContentLoaded", focusReview);
})();
