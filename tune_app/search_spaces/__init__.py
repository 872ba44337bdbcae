"""Search spaces shipped with the package (`modifications.yaml` for PBT, `capacity.yaml` for Optuna).

These are the source: the top-level `search_spaces/` holds copies for users to edit
(tests/plan/test_search_space.py checks that the two stay identical).
"""
