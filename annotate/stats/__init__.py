"""Pure statistics over numpy arrays, shared by both apps: agreement figures, vectorised pairwise κ, reference kinds.

No database, no Django: `annotate` reports and exports and every `judges` module that shows a figure import from here,
so the maths has one home and `judges` depends on `annotate`, never the other way round."""
