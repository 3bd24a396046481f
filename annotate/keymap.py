"""The labeling pages' keyboard, as data.

One list per page and project kind drives both the `?` overlay (rendered from it) and static/js/label.js (the page
hands it over with `json_script`), so the help and the keys cannot disagree. Pages: "queue" (/p/<slug>/label/) and
"edit" (the change-your-labels page that Undo and History open), "adjudicate" (a lead's gold labels for one disputed
item at a time, /p/<slug>/adjudicate/). `keys` are KeyboardEvent.key values; `action` is a
stable id the script acts on:

- "choose:<i>" picks the i-th radio of the active criterion, in the order the page shows them (Left, Right, Tie /
  Pass, Fail; on the adjudication page A, B, Tie: the lead sees the outputs unshuffled), and moves to the next
  criterion;
- "next" / "prev" move between criteria; "note" focuses the note (Escape leaves it); "submit" submits (queue) or saves
  (edit) or saves the gold labels and opens the next unresolved item (adjudicate); "skip", "undo" (queue only);
  "cancel" (edit only: back to the queue or History); "next-unresolved" (adjudicate only: leave this item for later
  and open the next unresolved one); "help" shows or hides the overlay.
"""

from __future__ import annotations

from dataclasses import dataclass

PAGES = ("queue", "edit", "adjudicate")
KINDS = ("binary", "pairwise")

# How the overlay writes a key whose KeyboardEvent.key value is a word.
_KEY_NAMES = {"ArrowLeft": "←", "ArrowRight": "→", "Escape": "Esc"}


@dataclass(frozen=True)
class Binding:
    keys: tuple[str, ...]
    action: str
    label: str

    @property
    def key_names(self) -> list[str]:
        """The keys as the overlay shows them (← for ArrowLeft)."""
        return [_KEY_NAMES.get(key, key) for key in self.keys]

    def as_data(self) -> dict[str, object]:
        """The binding for label.js (through json_script)."""
        return {"keys": list(self.keys), "action": self.action, "label": self.label}


def keymap(*, page: str, kind: str, allow_tie: bool) -> list[Binding]:
    """The ordered bindings of one labeling page for a project kind; `allow_tie` matters for pairwise only."""
    if page not in PAGES:
        raise ValueError(f"Unknown labeling page {page!r}: expected one of {PAGES}.")
    if kind not in KINDS:
        raise ValueError(f"Unknown project kind {kind!r}: expected one of {KINDS}.")
    bindings = [
        Binding(("j",), "next", "Next criterion"),
        Binding(("k",), "prev", "Previous criterion"),
    ]
    if kind == "pairwise":
        # The lead adjudicates the outputs as stored (A, B); an annotator sees them in a per-person order.
        first, second = ("Output A", "Output B") if page == "adjudicate" else ("Left", "Right")
        bindings += [
            Binding(("1", "ArrowLeft"), "choose:0", f"{first} is better"),
            Binding(("2", "ArrowRight"), "choose:1", f"{second} is better"),
        ]
        if allow_tie:
            bindings.append(Binding(("3", "t"), "choose:2", "Tie"))
    else:
        bindings += [
            Binding(("1", "p"), "choose:0", "Pass"),
            Binding(("2", "f"), "choose:1", "Fail"),
        ]
    bindings.append(Binding(("n",), "note", "Write a note (Esc leaves it)"))
    if page == "queue":
        bindings += [
            Binding(("Enter",), "submit", "Submit (every criterion needs a value)"),
            Binding(("s",), "skip", "Skip this item: it comes back later, at the end of your queue"),
            Binding(("u",), "undo", "Undo: reopen the item you last submitted"),
        ]
    elif page == "adjudicate":
        bindings += [
            Binding(("Enter",), "submit", "Save the gold labels and open the next unresolved item"),
            Binding(("s",), "next-unresolved", "Next unresolved item (leave this one for later)"),
        ]
    else:
        bindings += [
            Binding(("Enter",), "submit", "Save changes"),
            Binding(("Escape",), "cancel", "Cancel: go back without saving"),
        ]
    bindings.append(Binding(("?",), "help", "Show or hide this help"))
    return bindings
