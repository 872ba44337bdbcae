"""The training plan as data (no torch): plans, schedules, modifications, rules, search spaces."""
