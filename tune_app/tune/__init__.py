"""Everything that knows Ray: trainable, PBT, search spaces, runners. Nothing below imports it."""
