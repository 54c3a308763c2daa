"""The candidate sources, one module each, and their merge (merge.py).

  - EMBEDDING (embedding.py): ANN of the user's query vector: the query tower on the request's fresh history,
    demographics and context when the bundle has one, else the bundle's precomputed user vector;
  - ITEM_NEIGHBOURS (neighbours.py): item-to-item neighbours of the most recent items (also what a user unknown
    to the model but with fresh history gets from a bundle without a query tower);
  - HISTORY_AFFINITY (affinity.py): the best items by the bundle's item-to-item (DLAE or EASE) weights summed
    over the user's whole history (training interactions plus fresh items), for bundles with item_affinity;
  - SEGMENT_POPULAR / TRENDING (segments.py): for a user with no history of their own who can still be placed
    (known to the segments, or a query vector from demographics): popular in their segment, else trending;
  - FRESH (fresh.py): items added at runtime, then the newest releases (for users with a query vector);
  - POPULAR, or TRENDING with cold_start_source=trending (popular.py): fills what the others leave empty; the
    whole answer for a cold-start user.
Every source searches with the same filter (genres, exclusions, seen items, removed items), inside the index
where possible (artifacts/ann_index.py), so a strict filter still returns `count` items whenever that many
qualify.
"""
