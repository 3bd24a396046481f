"""Getting items and labels in: one pipeline behind the browser upload, the two commands and the token API.

Why one pipeline: the promises (every bad row named with its line, all or nothing, importing twice changes nothing,
a changed item is a conflict unless the lead asks to update) are only as good as the weakest way in.

How a run goes: rows are read one at a time from the file (JSON Lines or CSV) or the API batch (parsing), each is
checked and built (checking), and every BATCH rows are compared with what the project holds and, unless it is a
preview, written (items, labels, on what runs share). Only one batch is ever held, so memory does not grow with the
file; the first-seen line of every id is the one thing kept per row (to name duplicates). Writes happen inside one
transaction under a per-project lock; a single bad row anywhere rolls everything back and the report names every bad
row (report). On PostgreSQL new items go in with COPY. files imports a whole file; jobs is the browser's upload,
preview and confirm around it. Callers import the module they need; nothing is re-exported here.
"""
