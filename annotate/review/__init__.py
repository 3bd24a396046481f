"""Error analysis built in: review items with an overall verdict and a note (open coding), group the notes into
failure modes (axial coding), count the modes per day or week, and promote a mode to a rubric criterion.

services.py writes, selectors.py reads, counts.py is the pure maths, views.py the pages, api.py the token API.
The judge endpoint's suggested grouping lives in judges.suggest (annotate never imports judges).
"""
